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
-- (migrations/0015's function), with the user's own role, so their session tokens stop at
-- once in every API process.
CREATE TRIGGER admin_enabled AFTER INSERT OR UPDATE OF enabled ON users
    FOR EACH ROW WHEN (NEW.role = 'admin') EXECUTE FUNCTION notify_principal('admin', 'userid');
CREATE TRIGGER dispatcher_enabled AFTER INSERT OR UPDATE OF enabled ON users
    FOR EACH ROW WHEN (NEW.role = 'dispatcher')
    EXECUTE FUNCTION notify_principal('dispatcher', 'userid');

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
