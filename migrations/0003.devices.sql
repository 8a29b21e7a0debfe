-- depends: 0001.extensions
-- The device registry: who may send fixes, for which tenant, and how they prove it.
CREATE TABLE devices (
    id               text        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    kind             text        NOT NULL
        CHECK (kind IN ('tow_truck', 'service_van', 'phone', 'tracker', 'other')),
    token_hash       text        NOT NULL,   -- never the token itself
    protocols        text[]      NOT NULL DEFAULT '{}',  -- hints: nmea, json, owntracks
    owntracks_user   text,
    owntracks_device text,
    enabled          boolean     NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((owntracks_user IS NULL) = (owntracks_device IS NULL)),
    UNIQUE (owntracks_user, owntracks_device)
);
CREATE INDEX devices_tenant ON devices (tenant_id);
