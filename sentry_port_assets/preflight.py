"""Checks of the Dagster instance before anything runs on it.

Two runs started at once on a fresh `DAGSTER_HOME` (a CI job triggered twice) can both create Dagster's SQLite
storage and leave it with two schema versions; every later run then fails deep inside Dagster. The code location
refuses to load on such a `DAGSTER_HOME`, with how to recover. (A Postgres-backed instance has no such files.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sentry_port_assets.config import dagster_home

# Where Dagster's SQLite storages keep their schema version (run, event-log index, schedule storage).
_STORAGE_FILES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")


def dagster_home_problem(home: str | Path | None = None) -> str | None:
    """What is wrong with the SQLite storage under `home` (default $DAGSTER_HOME), or None."""
    root = Path(home) if home else dagster_home()
    if root is None:
        return None
    for name in _STORAGE_FILES:
        path = root / name
        if not path.is_file():
            continue
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                versions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) or "locked" in str(exc):
                continue  # being created right now, or busy: Dagster copes with both
            return f"DAGSTER_HOME={root}: {path} cannot be read ({exc}); {_RECOVER}"
        except sqlite3.DatabaseError as exc:
            return f"DAGSTER_HOME={root}: {path} is not a readable SQLite database ({exc}); {_RECOVER}"
        if len(versions) > 1:
            return (f"DAGSTER_HOME={root}: {path} records {len(versions)} schema versions ({', '.join(versions)}): "
                    f"two Dagster processes created or migrated this instance at once; {_RECOVER}")
    return None


_RECOVER = ("stop every Dagster process that uses it, then run `dagster instance migrate`, or move the folder away to "
            "start a fresh instance (its run history is lost; the catalog in Port is not affected). In CI, run one "
            "sync at a time (a `concurrency:` group, see the README)")
