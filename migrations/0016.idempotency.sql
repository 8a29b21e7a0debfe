-- depends: 0015.principals-notify
-- Idempotency-Key (api/idempotency.py): the first answer to a principal's write under a key,
-- kept 24 h. The row is inserted at the start of the write's own transaction (a second
-- request with the same key waits on it) and carries the answer when that transaction
-- commits, so a write is never applied without its key nor its key kept without its
-- answer.
CREATE TABLE idempotencykeys (
    tenant_id   text        NOT NULL,
    principal   text        NOT NULL,  -- role:subject
    key         text        NOT NULL,
    fingerprint text        NOT NULL,  -- sha256 of method, path, query and body
    status      integer,               -- null while the first request runs
    body        bytea,
    mediatype   text,
    createdat   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, principal, key)
);
CREATE INDEX idempotencykeys_created ON idempotencykeys (createdat);
