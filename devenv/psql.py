"""`make psql`: an interactive psql on the warehouse (DATABASE_URL, else the embedded one)."""

from __future__ import annotations

import os
import shutil
import sys

from pgserver._commands import POSTGRES_BIN_PATH
from sqlalchemy.engine import make_url

from devenv.postgres import embedded_warehouse_url


def libpq_url(url: str) -> str:
    """psql speaks libpq URLs: drop SQLAlchemy's `+psycopg` driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def main() -> int:
    url = os.environ.get("DATABASE_URL") or embedded_warehouse_url()
    # The system psql if there is one, else the one pgserver ships with its server.
    psql = shutil.which("psql") or str(POSTGRES_BIN_PATH / "psql")
    os.execv(psql, [psql, libpq_url(url), *sys.argv[1:]])
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main())
