-- depends: 0016.idempotency 0016.staff-users
-- The technician app's credential (issue 23): a second token of the technician's own
-- device, minted by the API for the signed-in technician (POST /technician/device-credentials)
-- and stored hashed like the device's token. Only the gateway's OwnTracks HTTP listener
-- takes it (the browser app posts its fixes there); the broker and the TCP listeners never
-- do, and the device's own token keeps working for whatever else sends as the device.
ALTER TABLE devices ADD COLUMN app_token_hash text;

-- The app token lives as long as the technician's link to the device: staff linking the
-- technician to another device (or none), or disabling the technician, clears it. The
-- devices table's NOTIFY (0009) tells every gateway within a second.
CREATE FUNCTION technician_app_token_revoke() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.device_id IS NOT NULL
       AND (NEW.device_id IS DISTINCT FROM OLD.device_id OR NOT NEW.enabled) THEN
        UPDATE devices SET app_token_hash = NULL
        WHERE id = OLD.device_id AND app_token_hash IS NOT NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER technician_app_token_revoke AFTER UPDATE OF device_id, enabled
    ON technicianmaster FOR EACH ROW EXECUTE FUNCTION technician_app_token_revoke();
