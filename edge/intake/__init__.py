"""LAN intake: workstations upload recordings here; 201 only once sealed and durable."""

from edge.intake.app import IntakeContext, create_app
from edge.intake.hotfolder import HotFolder
from edge.intake.ingest import Ingestor, Outcome
from edge.intake.tokens import TokenStore

__all__ = ["HotFolder", "Ingestor", "IntakeContext", "Outcome", "TokenStore", "create_app"]
