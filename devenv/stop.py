"""`make stop`: stop the embedded PostgreSQL that `make run` and `make dev` leave running."""

from __future__ import annotations

import sys

from devenv.postgres import data_dir, stop_embedded_postgres


def main() -> int:
    if stop_embedded_postgres():
        print(f"Stopped the embedded PostgreSQL in {data_dir()}.")
    else:
        print("The embedded PostgreSQL is not running.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
