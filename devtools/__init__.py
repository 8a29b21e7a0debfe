"""Developer tooling, not part of the product: the native service stack (`fixgate stack`),
the simulated fleet (`fixgate simulate`) and the demo (`fixgate demo`).

Shipped in the wheel so that `fixgate stack up` works from an installed package too, but
nothing in gateway/, devices/, ingest/, geofence/ or api/ imports it.
"""
