-- Schema version 13: replay and re-decode (doc/architecture.md, "Replay"; doc/operations.md,
-- "A decoder had a bug").

-- The raw message (raw_messages.correlation_id) each stored normalised message came from. It is
-- not always the message's own broker_correlation_id: a Dragino record gets an id derived from
-- the device and the record's time, and one YDOC or Dragino message yields several normalised
-- messages. The sources pass it to the mapper in the x-broker-raw-correlation-id AMQP header;
-- without it (IoTa's rows, a message published by something else) the message's own id stands.
-- No foreign key: IoTa's rows may have no raw copy, and raw rows are never deleted anyway.
ALTER TABLE physical_timeseries ADD COLUMN IF NOT EXISTS raw_correlation_id uuid;
-- The replay that stored the row (replay_runs.id); NULL for rows the mapper stored.
ALTER TABLE physical_timeseries ADD COLUMN IF NOT EXISTS replay_id uuid;

-- Rows stored before this migration: their body's id, when a raw message has that id. Rows left
-- NULL (IoTa's rows without a raw copy, Dragino records with derived ids) are found by a replay
-- through their body's id instead (findRowsOfRawMessages in physical-timeseries.ts). The ts_delta
-- trigger (003) would compute ts_delta for every row updated: IoTa's rows keep theirs.
ALTER TABLE physical_timeseries DISABLE TRIGGER update_physical_timeseries_ts_delta_trigger;
WITH candidates AS (
    SELECT uid,
           CASE WHEN json_msg->>'broker_correlation_id'
                     ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN (json_msg->>'broker_correlation_id')::uuid END AS cid
    FROM physical_timeseries
    WHERE raw_correlation_id IS NULL
)
UPDATE physical_timeseries p
SET raw_correlation_id = c.cid
FROM candidates c
JOIN raw_messages r ON r.correlation_id = c.cid
WHERE p.uid = c.uid;
ALTER TABLE physical_timeseries ENABLE TRIGGER update_physical_timeseries_ts_delta_trigger;

CREATE INDEX IF NOT EXISTS physical_timeseries_raw_correlation_id_idx
    ON physical_timeseries (raw_correlation_id) WHERE raw_correlation_id IS NOT NULL;
-- The mapper asks, per batch, whether a message's raw message was replayed since: a small index
-- of replayed rows only answers that without touching the rest (dropped by 019: the
-- raw_correlation_id index answers it too).
CREATE INDEX IF NOT EXISTS physical_timeseries_replayed_idx
    ON physical_timeseries (raw_correlation_id) WHERE replay_id IS NOT NULL;
-- Legacy rows are found by their body's id (only those with no raw id, so the index stays small
-- once history has been replayed).
CREATE INDEX IF NOT EXISTS physical_timeseries_legacy_cid_idx
    ON physical_timeseries ((json_msg->>'broker_correlation_id')) WHERE raw_correlation_id IS NULL;

-- One row per replay: what it selected and how far it got, so an interrupted replay resumes
-- where it stopped. Raw messages are taken in uid order up to `last_raw_uid` (fixed at the start,
-- so messages arriving during the replay are not part of it). Every raw message with
-- uid <= stored_through has had its rows replaced (committed with this row's update);
-- published_through <= stored_through says up to where the replaced rows were also confirmed by
-- RabbitMQ. A resumed replay first publishes again the rows between the two.
CREATE TABLE IF NOT EXISTS replay_runs (
    id uuid PRIMARY KEY,
    selection jsonb NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    last_raw_uid integer NOT NULL,
    total integer NOT NULL,
    stored_through integer NOT NULL DEFAULT 0,
    published_through integer NOT NULL DEFAULT 0,
    done integer NOT NULL DEFAULT 0,
    changed integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    CHECK (published_through <= stored_through)
);
CREATE INDEX IF NOT EXISTS replay_runs_unfinished_idx ON replay_runs (started_at)
    WHERE finished_at IS NULL;
