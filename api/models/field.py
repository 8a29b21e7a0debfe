"""What the field apps (`/tech`, `/help`) read of the signed-in technician or customer
beyond the request API: the technician's credentials for sending their phone's position."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.models.common import CamelModel


class DeviceCredentials(CamelModel):
    """How the technician app sends the phone's fixes: OwnTracks HTTP to the gateway's
    listener, as the technician's own device, with an app token only that listener takes.
    Shown once: a later call replaces the token."""

    url: str = Field(description="The gateway's OwnTracks HTTP endpoint (POST).")
    protocol: Literal["owntracks"] = "owntracks"
    device_id: str = Field(description="The technician's device, as the ring and console see it.")
    user: str = Field(description="OwnTracks user (X-Limit-U, and the Basic user name).")
    device: str = Field(description="OwnTracks device (X-Limit-D).")
    token: str = Field(description="The Basic password: the app's token for the device.")
