-- depends: 0012.request-priority
-- Service areas (seed 000's service_areas): a tenant's coverage zone with a response-time
-- SLA. The zone is one of the engine's geofences of kind service_area (its shape, its
-- enter/exit events); this row adds what dispatch needs of it. Where areas overlap, the
-- higher priority level holds the request.
CREATE TABLE serviceareas (
    serviceareaid          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id              text        NOT NULL,
    geofenceid             bigint      NOT NULL UNIQUE REFERENCES geofences (id) ON DELETE CASCADE,
    description            text,
    prioritylevel          integer     NOT NULL DEFAULT 1,
    responsetimeslaminutes integer     NOT NULL DEFAULT 60 CHECK (responsetimeslaminutes > 0),
    enabled                boolean     NOT NULL DEFAULT true,
    version                integer     NOT NULL DEFAULT 1,
    createdat              timestamptz NOT NULL DEFAULT now(),
    updatedat              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX serviceareas_tenant ON serviceareas (tenant_id) WHERE enabled;

-- A request made inside an area carries it and the time a technician must be there by
-- (its requested or scheduled time plus the area's SLA); `slaviolatedat` is set once,
-- when that time passed with nobody there.
ALTER TABLE servicerequests
    ADD COLUMN serviceareaid uuid REFERENCES serviceareas (serviceareaid) ON DELETE SET NULL,
    ADD COLUMN sladueat      timestamptz,
    ADD COLUMN slaviolatedat timestamptz;
CREATE INDEX servicerequests_sla_due ON servicerequests (sladueat)
    WHERE sladueat IS NOT NULL AND slaviolatedat IS NULL AND arrivedat IS NULL
      AND requeststatus IN ('Pending', 'Ringing', 'Assigned', 'EnRoute');
CREATE INDEX servicerequests_area ON servicerequests (tenant_id, serviceareaid)
    WHERE serviceareaid IS NOT NULL;

-- Seed 000's sla_violations, for the arrival SLA: detected when the due time passes
-- (target minutes), its actual minutes and resolution filled in at the arrival.
CREATE TABLE slaviolations (
    violationid     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    requestid       uuid        NOT NULL REFERENCES servicerequests (requestid) ON DELETE CASCADE,
    serviceareaid   uuid        REFERENCES serviceareas (serviceareaid) ON DELETE SET NULL,
    violationtype   text        NOT NULL DEFAULT 'ArrivalTime'
        CHECK (violationtype IN ('ArrivalTime')),
    targetminutes   integer     NOT NULL,
    actualminutes   integer,
    detectedat      timestamptz NOT NULL DEFAULT now(),
    resolvedat      timestamptz,
    UNIQUE (requestid, violationtype)
);
CREATE INDEX slaviolations_tenant ON slaviolations (tenant_id, detectedat);

-- The arrival (the engine's, or the start of work without one) resolves the violation:
-- whichever action first sets `arrivedat`, the violation gets its actual minutes.
CREATE FUNCTION fixgate_sla_resolve() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE slaviolations
    SET actualminutes = round(extract(epoch FROM
            NEW.arrivedat - coalesce(NEW.scheduledat, NEW.requestedat)) / 60)::integer,
        resolvedat = NEW.arrivedat
    WHERE requestid = NEW.requestid AND resolvedat IS NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER servicerequests_sla_resolve AFTER UPDATE OF arrivedat ON servicerequests
    FOR EACH ROW WHEN (OLD.arrivedat IS NULL AND NEW.arrivedat IS NOT NULL
                       AND NEW.slaviolatedat IS NOT NULL)
    EXECUTE FUNCTION fixgate_sla_resolve();
