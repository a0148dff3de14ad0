"""The local development stack: embedded PostgreSQL, the CINNOX simulator, and `make run`.

Nothing here is used by the pipeline in production; it only supplies defaults when
`DATABASE_URL` and the CINNOX settings are not set.
"""

import warnings

# pgserver asks platformdirs for a runtime folder when it is imported, which warns on every
# start where XDG_RUNTIME_DIR is unset (CI, containers); the fallback it picks works.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
