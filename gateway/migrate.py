"""Schema migrations with yoyo-migrations: SQL files under migrations/, recorded in the
database (`_yoyo_migration`), applied under yoyo's lock so concurrent runs are safe."""

from __future__ import annotations

from pathlib import Path

from yoyo import get_backend, read_migrations


def _yoyo_url(database_url: str) -> str:
    # yoyo picks its driver from the scheme; psycopg 3 is the one we install.
    scheme, rest = database_url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


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
