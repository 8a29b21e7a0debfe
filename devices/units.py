"""Unit conversions, written once: decoders convert to SI here and nowhere else."""

KNOT_IN_MPS = 1852.0 / 3600.0
KMH_IN_MPS = 1000.0 / 3600.0
MPH_IN_MPS = 1609.344 / 3600.0


def knots_to_mps(knots: float) -> float:
    return knots * KNOT_IN_MPS


def kmh_to_mps(kmh: float) -> float:
    return kmh * KMH_IN_MPS


def mph_to_mps(mph: float) -> float:
    return mph * MPH_IN_MPS


def mps_to_kmh(mps: float) -> float:
    return mps / KMH_IN_MPS


def millivolts_to_volts(millivolts: float) -> float:
    return millivolts / 1000.0
