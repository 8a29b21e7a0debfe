-- TimescaleDB for the position history; PostGIS for geofence geometry.
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE EXTENSION IF NOT EXISTS postgis;
