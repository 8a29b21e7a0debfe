-- depends: 0009.devices-notify
-- The dispatch events' transactional outbox: an action writes its events here in its own
-- transaction, a relay moves them to the Redis stream `{prefix}dispatch` and deletes them
-- (api/outbox.py). Rows live milliseconds; the ones a dead process left are relayed by the
-- next relay pass of any API process. `groups` and `payload` are `json`, not `jsonb`: the
-- relay copies them to the stream as they were written (jsonb would reorder the keys and
-- respell numbers: the events are to stay byte for byte what they were).
CREATE TABLE dispatchoutbox (
    seq bigserial PRIMARY KEY,
    tenant_id text NOT NULL,
    event text NOT NULL,
    groups json NOT NULL,
    payload json NOT NULL,
    eventid uuid NOT NULL,
    createdat timestamptz NOT NULL DEFAULT now()
);
