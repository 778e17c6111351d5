"""Template databases: the schema, the categories and the generated units, built once
and then copied, so that every test or load run starts from the same state
(docs/architecture.md, "Tests and real services")."""

from __future__ import annotations

from pathlib import Path

from models.db import close_database, is_postgres, open_database
from models.migrate import upgrade
from models.unit_data import load_generated_units


def fill_template(url: str | None, sqlite_path: Path = Path("/nonexistent")) -> None:
    """Give the empty database at ``url`` (the SQLite file ``sqlite_path`` when ``url``
    is None) the schema, the categories and the generated units, and close it. A SQLite
    template ends checkpointed into its one file, ready to copy."""
    db = open_database(url, sqlite_path)
    try:
        upgrade()
        load_generated_units()
        if not is_postgres(db):
            db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        close_database()


def sqlite_template(directory: Path) -> Path:
    """A SQLite template database in ``directory``; its path."""
    path = directory / "template.sqlite3"
    fill_template(None, path)
    return path
