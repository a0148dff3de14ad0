"""Apply Alembic migrations from code (for `make run`, `make dev` and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def alembic_config() -> Config:
    """The project's Alembic config; bind a connection with `config.attributes["connection"]`."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logger"] = False  # leave the caller's logging alone
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Bring the warehouse schema to the newest revision; a no-op when it is there already.

    Safe to call from many processes at once: migrations/env.py takes an advisory lock first,
    so they migrate one after the other and the later ones find the schema at head.
    """
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
