"""The device registry over the API (admins register, disable, enable; staff list)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from api.models.common import CamelModel, Paging
from devices.fix import Protocol
from gateway.registry.store import DEVICE_KINDS, IMEI_DIGITS, MAX_TRACCAR_ID_CHARS


class DeviceKind(StrEnum):
    """The registry's kinds (gateway.registry.store.DEVICE_KINDS, the table's CHECK)."""

    TOW_TRUCK = "tow_truck"
    SERVICE_VAN = "service_van"
    PHONE = "phone"
    TRACKER = "tracker"
    OTHER = "other"


assert tuple(DeviceKind) == DEVICE_KINDS, "DeviceKind follows the registry's kinds"

DEVICE_ID_PATTERN = r"^[^/+#,*$\s]{1,64}$"
"""What the registry takes as an id (no MQTT wildcards or separators, no NMEA delimiters),
bounded: it is a topic level and a log field."""


class DeviceCreate(CamelModel):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    kind: DeviceKind
    imei: str | None = Field(None, pattern=rf"^[0-9]{{{IMEI_DIGITS}}}$",
                             description="A Teltonika or GT06 tracker's IMEI (15 digits)")  # fmt: skip
    traccar_id: str | None = Field(
        None, min_length=1, max_length=MAX_TRACCAR_ID_CHARS, pattern=r"^[\x21-\x7e]+$",
        description="The identifier set in the Traccar Client app",
    )  # fmt: skip
    owntracks: str | None = Field(
        None, pattern=r"^[^/+#\s]{1,64}/[^/+#\s]{1,64}$",
        description="The OwnTracks app's identity, user/device",
    )  # fmt: skip
    protocols: list[Protocol] = Field(
        default_factory=list, max_length=len(Protocol),
        description="The protocols it may send with (none: any)",
    )  # fmt: skip


class DeviceCreated(CamelModel):
    device_id: str
    token: str = Field(description="The device's token: shown only now, only its hash is kept")


class LiveState(StrEnum):
    LIVE = "live"
    """A fix within FIXGATE_ONLINE_MAX_AGE_S."""
    STALE = "stale"
    NEVER = "never"
    """No live position known (never sent a valid fix, or Redis lost it)."""


class DeviceInfo(CamelModel):
    device_id: str
    kind: str
    enabled: bool
    created_at: datetime
    imei: str | None = None
    traccar_id: str | None = None
    owntracks: str | None = None
    last_seen_at: datetime | None = Field(None, description="Fix time of its live position")
    last_protocol: str | None = None
    state: LiveState


class DeviceFilter(Paging):
    search: str | None = Field(None, max_length=64, description="Part of the id, IMEI or app id")
