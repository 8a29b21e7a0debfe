"""Migrations make the schema DESIGN.md describes, on the TimescaleDB edition at hand."""

from __future__ import annotations

import asyncpg
import psycopg

from gateway.migrate import migrate, migrations_dir, pending
from tests.support.services import Services


async def test_positions_is_a_hypertable_with_one_day_chunks(pg: asyncpg.Connection) -> None:
    row = await pg.fetchrow(
        "SELECT d.time_interval FROM timescaledb_information.hypertables h"
        " JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name)"
        " WHERE h.hypertable_name = 'positions'"
    )
    assert row is not None, "positions is not a hypertable"
    assert row["time_interval"].days == 1


async def test_positions_is_unique_per_device_and_time(pg: asyncpg.Connection) -> None:
    insert = (
        "INSERT INTO positions (time, device_id, tenant_id, lat, lon, protocol, received_at)"
        " VALUES ('2026-01-01T00:00:00Z', 'd1', 't1', 1, 2, 'json', now())"
    )
    await pg.execute(insert)
    try:
        await pg.execute(insert)
    except asyncpg.UniqueViolationError:
        pass
    else:
        raise AssertionError("a second row for the same device and time was accepted")


def test_second_migrate_is_a_no_op(db_url: str) -> None:
    dir_ = migrations_dir()
    assert pending(db_url, dir_) == []
    assert migrate(db_url, dir_) == []


def test_migrate_from_scratch_records_every_migration(services: Services) -> None:
    name = "fixgate_test_fresh"
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        url = services.database_url(name)
        files = sorted(p.stem for p in migrations_dir().iterdir() if p.suffix in (".sql", ".py"))
        # Numbers are reserved per issue (0008 came after 0009), so the order of
        # application follows the `-- depends:` lines, not the file names.
        assert sorted(migrate(url, migrations_dir())) == files
        with psycopg.connect(url) as conn:
            recorded = [
                r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1")
            ]
        assert recorded == files
        assert migrate(url, migrations_dir()) == []
    finally:
        with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_community_features_follow_the_license(pg: asyncpg.Connection) -> None:
    license_ = await pg.fetchval("SHOW timescaledb.license")
    compression = await pg.fetchval(
        "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = 'positions'"
    )
    # Apache edition: nothing Community-licensed was attempted; Community: compression is on.
    assert compression is (license_ == "timescale")


async def test_devices_and_geofences_tables_exist(pg: asyncpg.Connection) -> None:
    tables = {
        r[0] for r in await pg.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {"positions", "devices", "geofences"} <= tables
    # PostGIS is there for geofence geometry: a circle's centre and radius round-trip.
    await pg.execute(
        "INSERT INTO geofences (tenant_id, name, kind, geom, radius_m)"
        " VALUES ('t1', 'depot', 'depot', ST_SetSRID(ST_MakePoint(13.4, 52.5), 4326), 50)"
    )
    assert await pg.fetchval("SELECT ST_X(geom) FROM geofences WHERE name = 'depot'") == 13.4
