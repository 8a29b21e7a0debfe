"""fixgate's processes: the `fixgate` command, settings, the service stack, listeners, lifecycle and metrics.

This package owns every socket and every process entry point; the protocol cores in
`devices/` and the pipeline in `ingest/` never do I/O of their own.
"""
