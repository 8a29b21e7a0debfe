"""What fixgate's processes agree on, written once and imported by writer and readers alike.

Pure (no I/O, no clock, no logging; tests/unit/test_layout.py holds it so): the Redis key
names and their hash tags (`keys`), the live position (`live`), the positions stream's
entries (`positions`), the engine's events on their streams (`events`), and the Earth's
shape that every distance in the product uses (`geodesy`). A change here is a change of
the wire between processes: add, never rename (old and new processes run side by side
during a rolling restart).
"""
