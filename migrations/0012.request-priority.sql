-- depends: 0011.ringlog-hot-updates
-- A request's call priority (seed 000's CallPriority), as its rank: 0 Low, 1 Medium,
-- 2 High, 3 Critical. The ring takes due phases most urgent first; staff may escalate.
ALTER TABLE servicerequests
    ADD COLUMN priority smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3);
