"""Registers the fleet view fixtures (defined in fleet_support.py)."""

from tests.fleet.fleet_support import broker, pg_url, store

__all__ = ["broker", "pg_url", "store"]
