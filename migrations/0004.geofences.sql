-- depends: 0001.extensions
-- Geofences per tenant: polygons, or circles as a point with a radius in metres.
CREATE TABLE geofences (
    id         bigserial   PRIMARY KEY,
    tenant_id  text        NOT NULL,
    name       text        NOT NULL,
    kind       text        NOT NULL DEFAULT 'other'
        CHECK (kind IN ('service_area', 'depot', 'customer', 'other')),
    geom       geometry(Geometry, 4326) NOT NULL,
    radius_m   double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (
        (radius_m IS NULL AND GeometryType(geom) IN ('POLYGON', 'MULTIPOLYGON'))
        OR (radius_m > 0 AND GeometryType(geom) = 'POINT')
    ),
    UNIQUE (tenant_id, name)
);
CREATE INDEX geofences_tenant ON geofences (tenant_id);
