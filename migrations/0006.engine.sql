-- depends: 0005.community-features
-- The position engine: dwell per geofence, change notifications, trips, ETA predictions.

ALTER TABLE geofences ADD COLUMN dwell_s double precision NOT NULL DEFAULT 0 CHECK (dwell_s >= 0);

-- Engines reload a tenant's fences within a second of a change (payload: the tenant).
CREATE FUNCTION fixgate_geofences_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('fixgate_geofences', OLD.tenant_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('fixgate_geofences', NEW.tenant_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER geofences_notify AFTER INSERT OR UPDATE OR DELETE ON geofences
    FOR EACH ROW EXECUTE FUNCTION fixgate_geofences_notify();

-- A device heading to a destination. Per device the open trips (waiting, active) are
-- served in seq order; at most one is active.
CREATE TABLE trips (
    id           text             PRIMARY KEY,  -- uuid
    tenant_id    text             NOT NULL,
    device_id    text             NOT NULL REFERENCES devices (id),
    dest_lat     double precision NOT NULL CHECK (dest_lat BETWEEN -90 AND 90),
    dest_lon     double precision NOT NULL CHECK (dest_lon BETWEEN -180 AND 180),
    radius_m     double precision NOT NULL DEFAULT 30 CHECK (radius_m > 0),
    service_s    double precision NOT NULL DEFAULT 0 CHECK (service_s >= 0),
    ref          text,                           -- opaque, e.g. the dispatch request id
    state        text             NOT NULL DEFAULT 'waiting'
        CHECK (state IN ('waiting', 'active', 'arrived', 'canceled')),
    seq          bigserial        NOT NULL,
    created_at   timestamptz      NOT NULL DEFAULT now(),
    activated_at timestamptz,
    arrived_at   timestamptz,
    canceled_at  timestamptz
);
CREATE INDEX trips_open ON trips (device_id, seq) WHERE state IN ('waiting', 'active');
CREATE UNIQUE INDEX trips_one_active ON trips (device_id) WHERE state = 'active';
CREATE INDEX trips_tenant ON trips (tenant_id, created_at DESC);

CREATE FUNCTION fixgate_trips_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fixgate_trips', NEW.device_id);
    RETURN NULL;
END $$;

CREATE TRIGGER trips_notify AFTER INSERT OR UPDATE ON trips
    FOR EACH ROW EXECUTE FUNCTION fixgate_trips_notify();

-- Every ETA the engine emitted (one per trip_update); error_s is set on arrival:
-- predicted arrival (time + eta_s) minus actual arrival, seconds (positive: late).
CREATE TABLE eta_predictions (
    time        timestamptz      NOT NULL,  -- fix time the ETA was computed at
    trip_id     text             NOT NULL,
    device_id   text             NOT NULL,
    tenant_id   text             NOT NULL,
    distance_m  double precision NOT NULL,  -- remaining distance then
    eta_s       double precision NOT NULL,  -- predicted seconds to arrival
    calculation text             NOT NULL CHECK (calculation IN ('osrm', 'local')),
    event_id    text             NOT NULL,  -- the trip_update's id: redelivery stores once
    arrived_at  timestamptz,
    error_s     double precision
);

DO $$ BEGIN
    PERFORM create_hypertable('eta_predictions', by_range('time', INTERVAL '7 days'));
END $$;

CREATE UNIQUE INDEX eta_predictions_event ON eta_predictions (event_id, time);
CREATE INDEX eta_predictions_trip ON eta_predictions (trip_id, time);
