from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def spool_snapshot(spool_dir: Path) -> tuple[list[Any], list[str]]:
    """Rows and files of a spool, to prove a refused request changed nothing."""
    conn = sqlite3.connect(spool_dir / "spool.db")
    rows = conn.execute("SELECT * FROM recordings ORDER BY seq").fetchall()
    conn.close()
    files = sorted(p.name for p in (spool_dir / "data").iterdir())
    return rows, files
