-- depends: 0015.principals-notify
-- Staff who log in (admins and dispatchers) and the one-time sign-in links staff make for
-- technicians and customers (api/routes/auth.py). Passwords and link codes are stored as
-- hashes only: argon2id for passwords (api/passwords.py), SHA-256 for the 256-bit codes.
CREATE TABLE users (
    userid       uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    text        NOT NULL,
    email        text        NOT NULL CHECK (email = lower(email)),
    role         text        NOT NULL CHECK (role IN ('admin', 'dispatcher')),
    passwordhash text        NOT NULL,
    enabled      boolean     NOT NULL DEFAULT true,
    createdat    timestamptz NOT NULL DEFAULT now(),
    lastloginat  timestamptz,
    UNIQUE (email)  -- one login per address across tenants: the login form names no tenant
);
CREATE INDEX users_tenant ON users (tenant_id);

-- A user disabled (or enabled again) is announced like a customer or a technician
-- (migrations/0015), with the user's own role, so their session tokens stop at once.
CREATE FUNCTION notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.enabled IS DISTINCT FROM OLD.enabled THEN
        PERFORM pg_notify('fixgate_principals', json_build_object(
            'tenant', NEW.tenant_id, 'role', NEW.role, 'subject', NEW.userid::text,
            'enabled', NEW.enabled)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER user_enabled AFTER INSERT OR UPDATE OF enabled ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user();

CREATE TABLE signinlinks (
    codehash    text        PRIMARY KEY,  -- sha256 hex of the code; the code is never stored
    tenant_id   text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('technician', 'customer')),
    subject     uuid        NOT NULL,      -- technicianid or customerid
    createdby   text        NOT NULL,      -- the staff actor (role:subject)
    createdat   timestamptz NOT NULL DEFAULT now(),
    expiresat   timestamptz NOT NULL,
    redeemedat  timestamptz
);
CREATE INDEX signinlinks_expiry ON signinlinks (expiresat);
