-- depends: 0005.community-features
-- The dispatch API (seed 004): the catalog it assumes (customers, vehicles, vans,
-- technicians, services), service requests with their services, technician engagement,
-- the ring log, the ring schedule and an audit trail. Table and column names are the
-- specification's where it gives them; every table carries tenant_id; times are
-- timestamptz; mutable rows carry `version` for optimistic locking.

CREATE TABLE customermaster (
    customerid      uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       text        NOT NULL,
    userid          uuid        NOT NULL DEFAULT gen_random_uuid(),
    customercode    text        NOT NULL,
    email           text        NOT NULL DEFAULT '',
    firstname       text        NOT NULL DEFAULT '',
    lastname        text        NOT NULL DEFAULT '',
    phonenumber     text        NOT NULL DEFAULT '',
    profileimageurl text,
    gender          text        CHECK (gender IN ('Male', 'Female', 'Other')),
    enabled         boolean     NOT NULL DEFAULT true,
    version         integer     NOT NULL DEFAULT 1,
    createdat       timestamptz NOT NULL DEFAULT now(),
    updatedat       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, customercode)
);

CREATE TABLE customervehicles (
    customervehicleid uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         text        NOT NULL,
    customerid        uuid        NOT NULL REFERENCES customermaster (customerid) ON DELETE CASCADE,
    vin               text        NOT NULL,
    make              text,
    model             text,
    year              integer,
    trim              text,
    vehicletype       text,
    bodytype          text,
    enabled           boolean     NOT NULL DEFAULT true,
    version           integer     NOT NULL DEFAULT 1,
    createdat         timestamptz NOT NULL DEFAULT now(),
    updatedat         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customervehicles_customer ON customervehicles (tenant_id, customerid);

CREATE TABLE vanmaster (
    vanid              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    vannumber          text        NOT NULL,
    registrationnumber text        NOT NULL DEFAULT '',
    vin                text        NOT NULL DEFAULT '',
    make               text        NOT NULL DEFAULT '',
    model              text        NOT NULL DEFAULT '',
    year               integer     NOT NULL DEFAULT 0,
    enabled            boolean     NOT NULL DEFAULT true,
    version            integer     NOT NULL DEFAULT 1,
    createdat          timestamptz NOT NULL DEFAULT now(),
    updatedat          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, vannumber)
);

CREATE TABLE technicianmaster (
    technicianid       uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          text        NOT NULL,
    userid             uuid        NOT NULL DEFAULT gen_random_uuid(),
    techniciancode     text        NOT NULL,
    firstname          text        NOT NULL DEFAULT '',
    lastname           text        NOT NULL DEFAULT '',
    email              text,
    phonenumber        text,
    profileimageurl    text,
    availabilitystatus text        NOT NULL DEFAULT 'Offline'
        CHECK (availabilitystatus IN ('Available', 'EnRoute', 'Servicing', 'Offline', 'OnBreak')),
    -- The registry device whose live position is the technician's.
    device_id          text        REFERENCES devices (id) ON DELETE SET NULL,
    vanid              uuid        REFERENCES vanmaster (vanid) ON DELETE SET NULL,
    enabled            boolean     NOT NULL DEFAULT true,
    version            integer     NOT NULL DEFAULT 1,
    createdat          timestamptz NOT NULL DEFAULT now(),
    updatedat          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, techniciancode),
    UNIQUE (device_id)
);
CREATE INDEX technicianmaster_tenant ON technicianmaster (tenant_id);

CREATE TABLE servicemaster (
    serviceid          uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          text          NOT NULL,
    servicecode        text          NOT NULL,
    servicename        text          NOT NULL,
    servicedescription text,
    serviceprice       numeric(10,2) NOT NULL DEFAULT 0 CHECK (serviceprice >= 0),
    durationminutes    integer       NOT NULL DEFAULT 0 CHECK (durationminutes >= 0),
    category           text          NOT NULL DEFAULT 'Maintenance'
        CHECK (category IN ('Maintenance', 'Repair', 'Inspection', 'Diagnostic', 'Detailing',
                            'Customization', 'Emergency')),
    serviceavailablein text          NOT NULL DEFAULT 'Both'
        CHECK (serviceavailablein IN ('Van', 'ServiceCenter', 'Both')),
    enabled            boolean       NOT NULL DEFAULT true,
    version            integer       NOT NULL DEFAULT 1,
    createdat          timestamptz   NOT NULL DEFAULT now(),
    updatedat          timestamptz   NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, servicecode)
);

CREATE SEQUENCE servicerequests_number_seq;

CREATE TABLE servicerequests (
    requestid           uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           text          NOT NULL,
    requestnumber       varchar(50)   NOT NULL,
    customerid          uuid          NOT NULL REFERENCES customermaster (customerid) ON DELETE CASCADE,
    vehicleid           uuid          NOT NULL REFERENCES customervehicles (customervehicleid) ON DELETE CASCADE,
    vanid               uuid          REFERENCES vanmaster (vanid) ON DELETE SET NULL,
    currenttechnicianid uuid          REFERENCES technicianmaster (technicianid) ON DELETE SET NULL,
    servicescheduletype varchar(20)   NOT NULL CHECK (servicescheduletype IN ('OnDemand', 'Scheduled')),
    locationpreference  varchar(30)   NOT NULL
        CHECK (locationpreference IN ('CustomerLocation', 'ServiceCenter')),
    estimatedprice      numeric(10,2),
    subtotal            numeric(10,2),
    paymentstatus       varchar(20)   NOT NULL DEFAULT 'Pending'
        CHECK (paymentstatus IN ('Pending', 'Paid', 'PartiallyPaid', 'Refunded',
                                 'PartiallyRefunded', 'Failed')),
    paymentmethod       varchar(20),
    description         text,
    rating              integer       CHECK (rating BETWEEN 1 AND 5),
    feedback            text,
    feedbackat          timestamptz,
    scheduledat         timestamptz,
    assignedat          timestamptz,
    journeystartedat    timestamptz,
    arrivedat           timestamptz,
    startedat           timestamptz,
    stoppedat           timestamptz,
    completedat         timestamptz,
    cancelledat         timestamptz,
    cancelledby         text,           -- "<role>:<subject>" of who canceled
    cancellationreason  text,
    mileage             integer,
    evidences           text[],
    requeststatus       varchar(20)   NOT NULL
        CHECK (requeststatus IN ('Pending', 'Assigned', 'EnRoute', 'InProgress', 'Stopped',
                                 'Completed', 'Canceled', 'Accepted', 'Ringing')),
    latitude            numeric(9,6)  NOT NULL,
    longitude           numeric(9,6)  NOT NULL,
    location            text,
    -- Order within the technician's queue (admin reorder); NULL when not queued.
    queueposition       integer,
    -- The engine's trip for the journey (trips.id, migration 0006); NULL until started.
    tripid              text,
    requestedat         timestamptz   NOT NULL DEFAULT now(),
    updatedat           timestamptz   NOT NULL DEFAULT now(),
    ringstarttime       timestamptz,
    ringendtime         timestamptz,
    maxringradius       integer       DEFAULT 80,
    version             integer       NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, requestnumber)
);
CREATE INDEX idx_servicerequests_status ON servicerequests (tenant_id, requeststatus);
CREATE INDEX idx_servicerequests_location ON servicerequests (latitude, longitude);
CREATE INDEX idx_servicerequests_customer_requestedat
    ON servicerequests (tenant_id, customerid, requestedat DESC);
CREATE INDEX idx_servicerequests_technician
    ON servicerequests (tenant_id, currenttechnicianid, requeststatus);

CREATE TABLE requestedservices (
    id                uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         text          NOT NULL,
    requestid         uuid          NOT NULL REFERENCES servicerequests (requestid) ON DELETE CASCADE,
    serviceid         uuid          NOT NULL REFERENCES servicemaster (serviceid),
    serviceprice      numeric(10,2),
    durationminutes   integer       NOT NULL DEFAULT 0,
    servicestatus     varchar(20)   NOT NULL DEFAULT 'Pending'
        CHECK (servicestatus IN ('Pending', 'Completed', 'Rejected')),
    reasonofrejection text,
    isadditional      boolean       NOT NULL DEFAULT false,  -- added by the technician at completion
    CONSTRAINT uq_request_service UNIQUE (requestid, serviceid)
);
CREATE INDEX idx_requestedservices_request ON requestedservices (requestid);
CREATE INDEX idx_requestedservices_service ON requestedservices (serviceid);

CREATE TABLE technicianengagementdetails (
    engagementid uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    text        NOT NULL,
    requestid    uuid        NOT NULL REFERENCES servicerequests (requestid) ON DELETE CASCADE,
    technicianid uuid        NOT NULL REFERENCES technicianmaster (technicianid) ON DELETE CASCADE,
    action       varchar(20) NOT NULL CHECK (action IN ('NOTIFIED', 'ACCEPTED', 'REJECTED', 'CANCELED')),
    reason       text,
    time         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_technicianengagement_request ON technicianengagementdetails (requestid);
CREATE INDEX idx_technicianengagement_technician ON technicianengagementdetails (technicianid);

CREATE TABLE technicianringlog (
    ringlogid     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     text        NOT NULL,
    requestid     uuid        NOT NULL REFERENCES servicerequests (requestid) ON DELETE CASCADE,
    technicianid  uuid        NOT NULL REFERENCES technicianmaster (technicianid) ON DELETE CASCADE,
    phase         integer     NOT NULL,          -- 0-based ring phase
    ringminradius integer     NOT NULL,          -- miles
    ringmaxradius integer     NOT NULL,          -- miles
    ringstartedat timestamptz NOT NULL DEFAULT now(),
    ringendedat   timestamptz,
    createdat     timestamptz NOT NULL DEFAULT now(),
    updatedat     timestamptz NOT NULL DEFAULT now(),
    -- A technician is rung at most once per request, whichever process rings.
    UNIQUE (requestid, technicianid)
);
CREATE INDEX idx_ringlog_request ON technicianringlog (requestid, ringstartedat DESC);
CREATE INDEX idx_ringlog_technician ON technicianringlog (technicianid, ringstartedat DESC);

-- The ring's schedule: one row per request still ringing (or waiting to ring, for a
-- Scheduled request); `nextphase` is the phase to run at `dueat` (== the number of
-- phases: the ring times out to Pending). Rows are taken with FOR UPDATE SKIP LOCKED, so
-- a phase runs once with several API processes and survives their restarts.
CREATE TABLE ringschedule (
    requestid uuid        PRIMARY KEY REFERENCES servicerequests (requestid) ON DELETE CASCADE,
    tenant_id text        NOT NULL,
    nextphase integer     NOT NULL DEFAULT 0,
    dueat     timestamptz NOT NULL DEFAULT now(),
    createdat timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ringschedule_due ON ringschedule (dueat);

-- Every action on a request, allowed or refused: who, when, old and new state.
CREATE TABLE dispatchaudit (
    auditid      bigserial   PRIMARY KEY,
    tenant_id    text        NOT NULL,
    requestid    uuid        REFERENCES servicerequests (requestid) ON DELETE CASCADE,
    action       text        NOT NULL,         -- create, accept, reject, cancel, assign, ...
    actorrole    text        NOT NULL,         -- admin, dispatcher, technician, customer, system
    actorsubject text        NOT NULL,
    oldstate     text,
    newstate     text,
    outcome      text        NOT NULL CHECK (outcome IN ('ok', 'conflict', 'refused')),
    detail       text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispatchaudit_request ON dispatchaudit (requestid, at);
