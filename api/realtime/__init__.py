"""The real-time layer: `/ws` WebSocket clients fed from the Redis streams every API
process reads (docs/realtime.md)."""
