"""The ingest pipeline: validate, filter, dedup and batch fixes; write them to
TimescaleDB (COPY) and Redis (live positions); retention of old history."""
