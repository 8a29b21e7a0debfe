"""The dispatch API (FastAPI): service requests, ring assignment, ETA, tracking and the
WebSocket event stream. (Filled in by a later issue.)"""
