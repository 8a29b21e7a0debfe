"""Geofence engine: polygon and circle indexes per tenant, per-device inside/outside
state with hysteresis, enter/exit/dwell and arrival events. (Filled in by a later issue.)"""
