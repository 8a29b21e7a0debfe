"""GT06 (Concox) trackers and their many clones, over TCP.

framer.py   TCP bytes -> frames (length-split, CRC-ITU checked, resynchronising)
decoder.py  one frame -> login, location, heartbeat (what it says, no identity)
session.py  one connection: login, fixes, responses, error budget
"""

from devices.gt06.decoder import CellTower, TerminalStatus
from devices.gt06.session import Gt06Event, Gt06Packet, Gt06Session, SessionState, response

__all__ = [
    "CellTower",
    "Gt06Event",
    "Gt06Packet",
    "Gt06Session",
    "SessionState",
    "TerminalStatus",
    "response",
]
