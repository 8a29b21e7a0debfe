"""The groups a connection starts in, from the database (api/realtime/groups.py says
which)."""

from __future__ import annotations

import asyncpg

from api.events import request_group
from api.machine import RequestStatus
from api.principal import Principal, Role
from api.realtime.groups import home_groups
from api.store.requests import TERMINAL_STATES, subject_id


async def initial_groups(conn: asyncpg.Connection, principal: Principal) -> frozenset[str]:
    groups = set(home_groups(principal))
    if principal.role is Role.CUSTOMER:
        rows = await conn.fetch(
            "SELECT requestid FROM servicerequests WHERE tenant_id = $1 AND customerid = $2"
            " AND NOT requeststatus = ANY($3::text[])",
            principal.tenant,
            subject_id(principal),
            TERMINAL_STATES,
        )
    elif principal.role is Role.TECHNICIAN:
        rows = await conn.fetch(
            "SELECT r.requestid FROM servicerequests r WHERE r.tenant_id = $1"
            " AND ((r.currenttechnicianid = $2 AND NOT r.requeststatus = ANY($3::text[]))"
            "  OR (r.requeststatus = $4 AND EXISTS (SELECT 1 FROM technicianringlog l"
            "      WHERE l.requestid = r.requestid AND l.technicianid = $2"
            "      AND l.ringendedat IS NULL)))",
            principal.tenant,
            subject_id(principal),
            TERMINAL_STATES,
            RequestStatus.RINGING.value,
        )
    else:
        rows = []
    groups.update(request_group(str(r["requestid"])) for r in rows)
    return frozenset(groups)
