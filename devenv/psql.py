"""`make psql`: an interactive psql on the warehouse (DATABASE_URL, else the embedded one).

The psql bundled with pgserver, of the embedded server's major version: a system psql of
another version warns on connect and misses some of the server's `\\d` output.
"""

from __future__ import annotations

import os
import sys

import psycopg
from pgserver._commands import POSTGRES_BIN_PATH
from sqlalchemy.engine import make_url

from devenv.errors import OperatorError, cli
from devenv.postgres import embedded_warehouse_url
from warehouse.db import connection_problem


def libpq_url(url: str) -> str:
    """psql speaks libpq URLs: drop SQLAlchemy's `+psycopg` driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def main() -> int:
    return cli(_psql)


def _psql() -> int:
    url = os.environ.get("DATABASE_URL") or embedded_warehouse_url()
    try:  # one line on what is wrong rather than psql's, before handing over the terminal
        psycopg.connect(libpq_url(url), connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        raise OperatorError(connection_problem(exc, url)) from exc
    psql = str(POSTGRES_BIN_PATH / "psql")
    os.execv(psql, [psql, libpq_url(url), *sys.argv[1:]])
    return 0  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(main())
