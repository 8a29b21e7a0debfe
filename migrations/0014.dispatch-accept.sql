-- depends: 0013.service-areas
-- The accept in one statement (api/store/rings.py `accept`): called on its own, outside a
-- transaction, it is its own transaction, so the request's row lock a winning accept takes
-- is held for the time this function runs, not for round trips to the client; a losing
-- accept waits that long and, in the same call, reads the winner's committed state.
-- PL/pgSQL because each statement inside gets a fresh snapshot (READ COMMITTED): the queue
-- is counted after the technician's row lock is held, so it sees every accept of theirs
-- that committed before, which one plain statement could not.
--
-- The API decided the move before calling (api/machine.py) and built its events from the
-- request as read; the call states what it was read as (version, queue length), and
-- anything else answers `moved` so the API reads again.
CREATE FUNCTION dispatch_accept(
    p_tenant text, p_request uuid, p_technician uuid, p_version integer,
    p_expected_queue integer, p_queue_limit integer, p_now timestamptz,
    p_ring_end timestamptz, p_queued text[], p_assigned text,
    -- the audit rows (dispatchaudit's columns, api/store/outbox.py AUDIT_COLUMNS)
    a_tenant text[], a_request uuid[], a_action text[], a_role text[], a_subject text[],
    a_old text[], a_new text[], a_outcome text[], a_detail text[],
    -- the events (dispatchoutbox's columns)
    e_tenant text[], e_event text[], e_groups text[], e_payload text[], e_id uuid[],
    -- the event (1-based, 0: none) that goes to the technicians whose ring it ended too,
    -- as `p_group_prefix || technicianid`
    p_rung_event integer, p_group_prefix text, p_ringable text[]
) RETURNS TABLE (outcome text, queued integer, state text, version integer,
                 seqs bigint[], groups text[], created timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    rung uuid[];
    g text[] := e_groups;
    st text;
    v integer;
BEGIN
    PERFORM 1 FROM technicianmaster WHERE technicianid = p_technician
        AND tenant_id = p_tenant AND enabled FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'gone'::text, 0, NULL::text, NULL::integer, NULL::bigint[],
            NULL::text[], NULL::timestamptz;
        RETURN;
    END IF;
    SELECT count(*) INTO n FROM servicerequests
    WHERE tenant_id = p_tenant AND currenttechnicianid = p_technician
      AND requeststatus = ANY(p_queued);
    IF n >= p_queue_limit THEN
        RETURN QUERY SELECT 'full'::text, n, NULL::text, NULL::integer, NULL::bigint[],
            NULL::text[], NULL::timestamptz;
        RETURN;
    END IF;
    IF n <> p_expected_queue THEN
        -- The queue changed since the read: the events would tell the wrong place.
        RETURN QUERY SELECT 'moved'::text, n, r.requeststatus::text, r.version, NULL::bigint[],
            NULL::text[], NULL::timestamptz FROM servicerequests r WHERE r.requestid = p_request;
        RETURN;
    END IF;
    -- The ring's schedule row before the request's: a ring phase takes them in that order
    -- (api/ring.py), so taking them the other way round could deadlock with one.
    PERFORM 1 FROM ringschedule WHERE requestid = p_request FOR UPDATE;
    UPDATE servicerequests r SET requeststatus = p_assigned, version = r.version + 1,
        updatedat = now(), currenttechnicianid = p_technician, assignedat = p_now,
        queueposition = n + 1, ringendtime = p_ring_end
    WHERE r.requestid = p_request AND r.tenant_id = p_tenant AND r.version = p_version
      AND r.requeststatus = ANY(p_ringable);
    IF NOT FOUND THEN
        -- Changed since the read (taken, or only moved on): this statement's snapshot is
        -- fresh, so it sees the accept that won while this one waited for its lock.
        SELECT r.requeststatus, r.version INTO st, v FROM servicerequests r
        WHERE r.requestid = p_request;
        RETURN QUERY SELECT 'moved'::text, n, st, v, NULL::bigint[], NULL::text[],
            NULL::timestamptz;
        RETURN;
    END IF;
    INSERT INTO technicianengagementdetails (tenant_id, requestid, technicianid, action)
    VALUES (p_tenant, p_request, p_technician, 'ACCEPTED');
    WITH ended AS (
        UPDATE technicianringlog SET ringendedat = now(), updatedat = now()
        WHERE requestid = p_request AND ringendedat IS NULL
        RETURNING technicianid
    )
    SELECT coalesce(array_agg(technicianid) FILTER (WHERE technicianid <> p_technician),
                    '{}') INTO rung FROM ended;
    DELETE FROM ringschedule WHERE requestid = p_request;
    INSERT INTO dispatchaudit (tenant_id, requestid, action, actorrole, actorsubject,
                               oldstate, newstate, outcome, detail)
    SELECT * FROM unnest(a_tenant, a_request, a_action, a_role, a_subject, a_old, a_new,
                         a_outcome, a_detail);
    IF p_rung_event > 0 AND cardinality(rung) > 0 THEN
        g[p_rung_event] := (g[p_rung_event]::jsonb
            || to_jsonb(ARRAY(SELECT p_group_prefix || t FROM unnest(rung) t)))::text;
    END IF;
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO dispatchoutbox (tenant_id, event, groups, payload, eventid)
        SELECT u.tn, u.ev, u.gr::json, u.pl::json, u.id
        FROM unnest(e_tenant, e_event, g, e_payload, e_id)
            WITH ORDINALITY AS u(tn, ev, gr, pl, id, k)
        ORDER BY u.k
        RETURNING dispatchoutbox.seq, dispatchoutbox.createdat
    )
    SELECT 'won'::text, n, p_assigned, p_version + 1,
           (SELECT array_agg(seq ORDER BY seq) FROM inserted), g,
           (SELECT min(createdat) FROM inserted);
END
$$;
