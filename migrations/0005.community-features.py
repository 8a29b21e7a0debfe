"""Community-licensed TimescaleDB features, only where the license allows them.

Debian's build is the Apache edition (`timescaledb.license` = `apache`): compression is
not available there and this step does nothing. Retention works on both editions and is
the gateway's job (`gateway.sinks.retention`): a policy job on Community, `drop_chunks` on a
schedule elsewhere, both following FIXGATE_RETENTION_DAYS.
"""

from yoyo import step

__depends__ = {"0002.positions"}


def enable_compression(conn):
    cur = conn.cursor()
    cur.execute("SHOW timescaledb.license")
    if cur.fetchone()[0] != "timescale":
        return
    cur.execute(
        "ALTER TABLE positions SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'device_id',"
        " timescaledb.compress_orderby = 'time DESC')"
    )
    # A week back: late backlog uploads land in uncompressed chunks almost always.
    cur.execute(
        "SELECT add_compression_policy('positions', INTERVAL '7 days', if_not_exists => true)"
    )


def disable_compression(conn):
    cur = conn.cursor()
    cur.execute("SHOW timescaledb.license")
    if cur.fetchone()[0] != "timescale":
        return
    cur.execute("SELECT remove_compression_policy('positions', if_exists => true)")


steps = [step(enable_compression, disable_compression)]
