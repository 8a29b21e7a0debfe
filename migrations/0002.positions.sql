-- depends: 0001.extensions
-- The position history: one row per (device, fix time), the normalized fix's columns.
CREATE TABLE positions (
    time        timestamptz      NOT NULL,  -- fix time, UTC, from the device
    device_id   text             NOT NULL,
    tenant_id   text             NOT NULL,
    lat         double precision NOT NULL,  -- WGS84 degrees
    lon         double precision NOT NULL,
    altitude    real,                       -- metres above mean sea level
    speed       real,                       -- m/s
    heading     real,                       -- degrees true
    accuracy    real,                       -- metres (phones)
    hdop        real,
    satellites  smallint,
    valid       boolean          NOT NULL DEFAULT true,
    protocol    text             NOT NULL,
    received_at timestamptz      NOT NULL,  -- server receive time
    battery     smallint                    -- percent
);

DO $$ BEGIN
    PERFORM create_hypertable('positions', by_range('time', INTERVAL '1 day'));
END $$;

-- Unique per device and fix time (duplicates are stored once); the same index serves
-- "this device between t1 and t2, newest first".
CREATE UNIQUE INDEX positions_device_time ON positions (device_id, time DESC);
CREATE INDEX positions_tenant_time ON positions (tenant_id, time DESC);
