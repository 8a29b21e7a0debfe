"""OSRM for tests: a private osrm-routed, and known points of the stack's extracts."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from contracts import geodesy
from devtools.stack.native import _locked
from devtools.stack.osrm import OsrmService
from devtools.stack.settings import StackSettings
from tests.support.ports import free_port


@dataclass(frozen=True)
class ExtractPoints:
    """Two points on roads of an extract, about a kilometre or two apart by road."""

    origin: tuple[float, float]
    destination: tuple[float, float]


# Looked up on the extracts with OSRM's `nearest` (each within ~20 m of a road).
POINTS = {
    # Monaco: from Fontvieille (Tunnel Rocher Palais) to Avenue Princesse Grace.
    "monaco": ExtractPoints(origin=(43.7312, 7.4197), destination=(43.7467, 7.4337)),
    # Helsinki: from Kaivokatu (the railway station) to Korkeavuorenkatu.
    "helsinki": ExtractPoints(origin=(60.1699, 24.9384), destination=(60.1675, 24.9457)),
}
BERLIN = (52.5200, 13.4050)  # far outside both extracts


def stack_extract_points() -> ExtractPoints:
    name = StackSettings().routing_pbf
    if name not in POINTS:
        raise LookupError(
            f"the OSRM tests know points of {', '.join(POINTS)}, not of FIXGATE_ROUTING_PBF={name!r}"
        )
    return POINTS[name]


@contextlib.contextmanager
def own_osrm_routed() -> Iterator[OsrmService]:
    """A second osrm-routed of our own on a free port, from the stack's prepared extract
    (prepared first if need be); stopped by PID at the end whatever happened."""
    settings = StackSettings(stack_osrm_port=free_port())
    osrm = OsrmService(settings)
    with _locked(settings.stack_dir):
        osrm.start()
    try:
        yield osrm
    finally:
        osrm.stop()
        shutil.rmtree(osrm.run_dir, ignore_errors=True)


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance of two (lat, lon) points, metres (contracts.geodesy)."""
    return geodesy.haversine_m(a[0], a[1], b[0], b[1])
