-- Schema version 17: an outbox for the ingest front-ends, and a fast device lookup (issues 11, 12).
-- The outbox: while PostgreSQL is up a stored raw row is already durable, so a front-end that cannot publish (RabbitMQ down or restarting) stores the
-- normalised messages it would have published here, in the same transaction as the raw rows'
-- device links, answers its sender, and a relay publishes the rows in id order once RabbitMQ is
-- back, deleting each only after RabbitMQ confirmed it. The body is kept as the exact text that
-- would have been published (jsonb would reorder its keys).
CREATE TABLE IF NOT EXISTS ingest_outbox (
    id bigserial PRIMARY KEY,
    source_name text NOT NULL REFERENCES sources (source_name),
    correlation_id uuid NOT NULL,
    -- The raw message the row was made from (x-broker-raw-correlation-id, migration 013): not
    -- always the body's id (a Dragino record's id is derived from its raw message's).
    raw_correlation_id uuid NOT NULL,
    -- The message's msg_key (AMQP message_id): a message published twice is stored once downstream.
    msg_key uuid NOT NULL,
    physical_uid integer NOT NULL,
    body text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ingest_outbox_source_id_idx ON ingest_outbox (source_name, id);

-- Device lookups of an ingest batch (src/db/repositories/physical-devices.ts): for each source-ids
-- subset, the lowest uid of the source's devices containing it. Written as a lateral search per
-- lookup, PostgreSQL cannot see a parameter's selectivity and plans a sequential scan for each
-- (12 ms per lookup at 25,000 devices, growing with the table); inside this function sequential
-- scans are discouraged, so each lookup is a GIN index scan (jsonb_path_ops, 003) of ~0.01 ms.
CREATE OR REPLACE FUNCTION broker_device_uids(p_source text, p_keys jsonb[])
RETURNS TABLE (ord bigint, uid integer)
LANGUAGE sql STABLE
SET enable_seqscan = off
AS $$
    SELECT v.ord,
           (SELECT d.uid FROM physical_devices d
            WHERE d.source_name = p_source AND d.source_ids @> v.k
            ORDER BY d.uid + 0 LIMIT 1)
    FROM unnest(p_keys) WITH ORDINALITY AS v(k, ord)
$$;

-- The lookup's GIN index takes new entries directly instead of through its pending list: with
-- fastupdate on, every device created since the last vacuum sits in an unordered list that each
-- lookup scans (1.3 ms per lookup after 25,000 new devices, 0.02 ms once merged), and many new
-- devices arrive at once exactly when lookups are busiest (a gateway back online). Creating a
-- device costs a little more; looking one up happens on every message.
ALTER INDEX physical_devices_source_ids_path_idx SET (fastupdate = off);
SELECT gin_clean_pending_list('physical_devices_source_ids_path_idx'::regclass);
