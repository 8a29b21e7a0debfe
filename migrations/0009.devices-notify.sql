-- depends: 0008.tracker-fields
-- Every change to the registry is announced on the channel `fixgate_devices` (payload: the
-- device id), so running gateways apply `fixgate device add/disable/enable` at once.
CREATE FUNCTION devices_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('fixgate_devices', OLD.id);
    ELSE
        PERFORM pg_notify('fixgate_devices', NEW.id);
        IF TG_OP = 'UPDATE' AND NEW.id <> OLD.id THEN
            PERFORM pg_notify('fixgate_devices', OLD.id);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER devices_notify AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_notify();
