"""Schema migrations with yoyo-migrations: SQL files under migrations/, recorded in the
database (`_yoyo_migration`), applied under yoyo's lock so concurrent runs are safe.

The migrations ship inside the distribution as the data-only package `migrations` (no
`__init__.py`: yoyo would take it for a migration), so an installed wheel finds them
through the import system, wherever it is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from yoyo import get_backend, read_migrations


def _yoyo_url(database_url: str) -> str:
    # yoyo picks its driver from the scheme; psycopg 3 is the one we install.
    scheme, rest = database_url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


FIRST_MIGRATION = "0001.extensions.sql"


def migrations_dir() -> Path:
    """The folder of fixgate's migrations: in the checkout, or in site-packages."""
    # A namespace package may span several folders; ours is the one holding our files.
    # (Its search locations, not `importlib.resources.files`: on Python 3.11 that fails
    # for a namespace package under setuptools' editable finder, whose path entry is no
    # folder.)
    spec = importlib.util.find_spec("migrations")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / FIRST_MIGRATION).is_file():
            return Path(location)
    raise FileNotFoundError(f"fixgate's migrations are not installed ({FIRST_MIGRATION} not found)")


def migrate(database_url: str, migrations_dir: Path) -> list[str]:
    """Apply what is not applied yet; return the ids applied (empty when up to date)."""
    backend = get_backend(_yoyo_url(database_url))
    try:
        migrations = read_migrations(str(migrations_dir))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


def pending(database_url: str, migrations_dir: Path) -> list[str]:
    backend = get_backend(_yoyo_url(database_url))
    try:
        return [m.id for m in backend.to_apply(read_migrations(str(migrations_dir)))]
    finally:
        backend.connection.close()
