-- depends: 0007.dispatch
-- The fleet trackers (issue 12): what Teltonika and GT06 report beyond the position, and
-- how such a device names itself. Nullable, no default: "not reported" is NULL, and adding
-- such a column rewrites nothing (also on a compressed hypertable).
ALTER TABLE positions
    ADD COLUMN ignition   boolean,           -- vehicle ignition (ACC line) on
    ADD COLUMN power_v    real,              -- external power supply, volts
    ADD COLUMN odometer_m double precision,  -- the tracker's total odometer, metres
    ADD COLUMN alarm      text;              -- what raised the fix (devices.alarms.Alarm)

-- A binary tracker logs in with its IMEI, the Traccar Client app with its own id: each
-- names at most one device.
ALTER TABLE devices
    ADD COLUMN imei       text UNIQUE,
    ADD COLUMN traccar_id text UNIQUE;
