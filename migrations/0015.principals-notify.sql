-- depends: 0014.dispatch-accept
-- (trigger arguments: the role, the id column)
-- A customer or technician disabled (or enabled again) is announced on the channel
-- `fixgate_principals`, so every API process refuses their token at once and closes their
-- open WebSockets (api/principals.py), without a database round trip per request.
CREATE FUNCTION notify_principal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.enabled IS DISTINCT FROM OLD.enabled THEN
        PERFORM pg_notify('fixgate_principals', json_build_object(
            'tenant', NEW.tenant_id,
            'role', TG_ARGV[0],
            'subject', to_jsonb(NEW) ->> TG_ARGV[1],
            'enabled', NEW.enabled)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER customer_enabled AFTER INSERT OR UPDATE OF enabled ON customermaster
    FOR EACH ROW EXECUTE FUNCTION notify_principal('customer', 'customerid');
CREATE TRIGGER technician_enabled AFTER INSERT OR UPDATE OF enabled ON technicianmaster
    FOR EACH ROW EXECUTE FUNCTION notify_principal('technician', 'technicianid');
