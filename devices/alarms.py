"""Alarm and event names a fix can carry in `Fix.alarm`, shared by every protocol.

Trackers number their alarms in vendor tables (GT06's alarm byte, Teltonika's event IO
ids); decoders translate them to these names so that dispatch reads one vocabulary. The
set is closed (it is a metrics and filter label); a vendor code with no name here becomes
`GENERAL`, so an alarm is never silently lost.
"""

from __future__ import annotations

import enum

__all__ = ["Alarm"]


class Alarm(enum.StrEnum):
    SOS = "sos"
    """The panic button (GT06 alarm 0x01)."""
    POWER_CUT = "power_cut"
    """External power disconnected (GT06 0x02, Teltonika's unplug IO 252)."""
    VIBRATION = "vibration"
    GEOFENCE_ENTER = "geofence_enter"
    GEOFENCE_EXIT = "geofence_exit"
    OVERSPEED = "overspeed"
    LOW_BATTERY = "low_battery"
    TOWING = "towing"
    CRASH = "crash"
    JAMMING = "jamming"
    """GSM or GNSS jamming detected."""
    GENERAL = "general"
    """An alarm the device does not qualify (Teltonika's alarm IO 236), or a vendor code
    this table has no name for."""
