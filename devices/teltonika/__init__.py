"""Teltonika trackers (FMB, FMC, FMM...): Codec 8, 8 Extended and 16 over TCP and UDP.

framer.py   TCP bytes -> login, AVL frames, pings (CRC-16/IBM checked)
avl.py      AVL data -> records -> fixes (shared by TCP and UDP)
session.py  one TCP connection: login, frames, acknowledgements, error budget
udp.py      one UDP datagram -> records, IMEI, acknowledgement
"""

from devices.teltonika.avl import AvlRecord
from devices.teltonika.session import AvlPacket, SessionState, TeltonikaEvent, TeltonikaSession
from devices.teltonika.udp import UdpAvlPacket, decode_udp

__all__ = [
    "AvlPacket",
    "AvlRecord",
    "SessionState",
    "TeltonikaEvent",
    "TeltonikaSession",
    "UdpAvlPacket",
    "decode_udp",
]
