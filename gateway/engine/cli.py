"""`fixgate engine`, `fixgate geofence ...`, `fixgate trip ...`, `fixgate eta report`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer

from contracts.keys import MAX_SHARDS
from gateway.config import Settings
from gateway.db import DbConnection
from gateway.engine import eta as eta_db
from gateway.engine import fences as fence_db
from gateway.engine import trips as trip_db

geofence_app = typer.Typer(no_args_is_help=True, help="Geofences: polygons and circles per tenant.")
trip_app = typer.Typer(no_args_is_help=True, help="Trips: a device heading to a destination.")
eta_app = typer.Typer(no_args_is_help=True, help="ETA accuracy, measured.")

T = TypeVar("T")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"fixgate: {message}", err=True)
    return typer.Exit(code=1)


def _run(fn: Callable[[DbConnection], Awaitable[T]]) -> T:
    async def go() -> T:
        conn = await asyncpg.connect(Settings().database_url)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


engine_app = typer.Typer(
    help="The position engine: geofence and trip events from the positions streams."
)


@engine_app.callback(invoke_without_command=True)
def engine(ctx: typer.Context) -> None:
    """Run the position engine (`fixgate engine`); `fixgate engine reshard` changes the
    shard count offline."""
    if ctx.invoked_subcommand is not None:
        return
    from gateway.engine.service import main
    from gateway.engine.settings import EngineSettings

    main(Settings(), EngineSettings())


@engine_app.command("reshard")
def reshard(
    to: Annotated[int, typer.Option("--to", min=1, max=MAX_SHARDS, help="The new shard count.")],
) -> None:
    """Move every device's Redis keys from FIXGATE_POSITION_SHARDS shards to --to shards.
    Offline: every gateway, engine and API stopped, everything read (docs/scaling.md)."""
    from gateway.engine.reshard import NotOffline
    from gateway.engine.reshard import reshard as move
    from gateway.redis_link import connect

    settings = Settings()

    async def go() -> Any:
        client = await connect(settings.redis_url)
        try:
            return await move(client, settings.redis_prefix, settings.position_shards, to)
        finally:
            await client.aclose()

    try:
        moved = asyncio.run(go())
    except NotOffline as e:
        raise _fail(f"not offline: {e}") from None
    typer.echo(
        f"resharded {settings.position_shards} -> {to} shards: {moved.devices} live positions,"
        f" {moved.states} engine states, {moved.members} GEO members; {moved.streams} old"
        f" streams and leases removed. Now start everything with FIXGATE_POSITION_SHARDS={to}."
    )


# ---- geofences -----------------------------------------------------------------------


@geofence_app.command("add")
def geofence_add(
    file: Annotated[
        Path, typer.Argument(help="GeoJSON: a Polygon/MultiPolygon, or a Point with --radius-m.")
    ],
    tenant: Annotated[str, typer.Option(help="Tenant the geofence belongs to.")],
    name: Annotated[str, typer.Option(help="Name, unique per tenant.")],
    kind: Annotated[str, typer.Option(help="service_area, depot, customer or other.")] = "other",
    dwell_s: Annotated[
        float, typer.Option(min=0.0, help="geofence_dwell after this long inside (0: none).")
    ] = 0.0,
    radius_m: Annotated[
        float | None, typer.Option(help="Circle radius for a Point, metres.")
    ] = None,
) -> None:
    """Add a geofence; prints its id alone on the last line."""
    try:
        doc: Any = json.loads(file.read_text())
        geom = fence_db.geometry_from_geojson(doc, radius_m)
        fid = _run(
            lambda c: fence_db.add_geofence(
                c,
                tenant=tenant,
                name=name,
                geometry=geom,
                kind=kind,
                radius_m=radius_m,
                dwell_s=dwell_s,
            )
        )
    except (OSError, ValueError, fence_db.BadGeofence) as e:
        raise _fail(str(e)) from None
    typer.echo(f"geofence {name!r} added to tenant {tenant} ({geom.geom_type}); its id:")
    typer.echo(str(fid))


@geofence_app.command("list")
def geofence_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """List geofences."""
    rows = _run(lambda c: fence_db.list_geofences(c, tenant=tenant))
    typer.echo(
        f"{'id':>8} {'tenant':16} {'name':24} {'kind':13} {'shape':13} {'radius_m':>9} {'dwell_s':>8}"
    )
    for r in rows:
        radius = f"{r.radius_m:.1f}" if r.radius_m is not None else "-"
        typer.echo(
            f"{r.id:>8} {r.tenant_id:16} {r.name:24} {r.kind:13} {r.geometry_type.lower():13} {radius:>9} {r.dwell_s:>8.0f}"
        )


@geofence_app.command("remove")
def geofence_remove(
    fid: Annotated[int, typer.Argument(help="Geofence id.")],
    tenant: Annotated[str | None, typer.Option(help="Only if it belongs to this tenant.")] = None,
) -> None:
    """Remove a geofence (devices inside it leave it silently)."""
    if not _run(lambda c: fence_db.remove_geofence(c, fid, tenant=tenant)):
        raise _fail(f"no geofence {fid}")
    typer.echo(f"geofence {fid} removed")


# ---- trips ---------------------------------------------------------------------------


def _latlon(text: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = text.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise typer.BadParameter(
            "LAT,LON in degrees, e.g. 48.137,11.575", param_hint="--to"
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise typer.BadParameter("latitude -90..90, longitude -180..180", param_hint="--to")
    return lat, lon


@trip_app.command("start")
def trip_start(
    tenant: Annotated[str, typer.Option(help="Tenant of the device.")],
    device: Annotated[str, typer.Option(help="Device that travels.")],
    to: Annotated[str, typer.Option(help="Destination LAT,LON.")],
    radius_m: Annotated[float, typer.Option(min=1.0, help="Arrival radius, metres.")] = 30.0,
    service_s: Annotated[
        float, typer.Option(min=0.0, help="Time spent at the destination, seconds (queue ETA).")
    ] = 0.0,
    ref: Annotated[
        str | None, typer.Option(help="Opaque reference carried by the trip's events.")
    ] = None,
) -> None:
    """Start (or queue) a trip; prints its id alone on the last line."""
    lat, lon = _latlon(to)
    try:
        trip_id = _run(
            lambda c: trip_db.start_trip(
                c,
                tenant=tenant,
                device=device,
                lat=lat,
                lon=lon,
                radius_m=radius_m,
                service_s=service_s,
                ref=ref,
            )
        )
    except (trip_db.UnknownDevice, ValueError) as e:
        raise _fail(str(e)) from None
    typer.echo(f"trip for {device} to {lat},{lon} started; its id:")
    typer.echo(trip_id)


@trip_app.command("cancel")
def trip_cancel(
    trip_id: Annotated[str, typer.Argument(help="Trip id.")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant of the trip (default: looked up).")
    ] = None,
) -> None:
    """Cancel an open trip (the device's next trip becomes active)."""

    async def go(c: DbConnection) -> bool:
        owner = tenant or await c.fetchval("SELECT tenant_id FROM trips WHERE id = $1", trip_id)
        return owner is not None and await trip_db.cancel_trip(c, trip_id, tenant=owner)

    if not _run(go):
        raise _fail(f"no open trip {trip_id}")
    typer.echo(f"trip {trip_id} canceled")


@trip_app.command("list")
def trip_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also arrived and canceled trips.")] = False,
) -> None:
    """List trips (open ones unless --all)."""
    rows = _run(lambda c: trip_db.list_trips(c, tenant=tenant, device=device, include_done=all_))
    typer.echo(
        f"{'id':36} {'tenant':12} {'device':20} {'state':9} {'destination':22} {'radius':>6} ref"
    )
    for r in rows:
        dest = f"{r.dest_lat:.5f},{r.dest_lon:.5f}"
        typer.echo(
            f"{r.id:36} {r.tenant_id:12} {r.device_id:20} {r.state:9} {dest:22} {r.radius_m:>6.0f} {r.ref or '-'}"
        )


# ---- eta -----------------------------------------------------------------------------


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            "a duration (30m, 24h, 7d) or an ISO 8601 time", param_hint="--since"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@eta_app.command("report")
def eta_report(
    since: Annotated[
        str | None, typer.Option(help="Only predictions since: 24h, 7d, or an ISO 8601 time.")
    ] = None,
) -> None:
    """Per remaining-distance band: count, median and mean absolute error, share within 2 min."""
    when = _since(since)
    rows = _run(lambda c: eta_db.report(c, when))
    typer.echo(
        f"{'band':10} {'count':>7} {'median |err| s':>15} {'mean |err| s':>13} {'within 2 min':>13}"
    )
    for r in rows:
        if r.count == 0:
            typer.echo(f"{r.band:10} {0:>7} {'-':>15} {'-':>13} {'-':>13}")
        else:
            typer.echo(
                f"{r.band:10} {r.count:>7} {r.median_abs_s:>15.0f} {r.mean_abs_s:>13.0f} {100 * (r.within_2min or 0):>12.0f}%"
            )
