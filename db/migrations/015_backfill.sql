-- Schema version 15: where `broker backfill` remembers how far it got, so an interrupted
-- backfill resumes where it stopped instead of starting over (delivery_queue skips a message it
-- still holds for the writer, but forgets delivered ones after WRITER_REMEMBER_HOURS: a restart
-- from the beginning a day later would deliver them twice).
--
-- One row per (writer, selection): `selection` is the canonical text of the time range and
-- logical devices chosen. Each batch inserts its messages into delivery_queue and moves
-- (last_ts, last_uid), the keyset position in physical_timeseries order (ts, uid), in the same
-- transaction. finished_at is set when the selection is exhausted.
CREATE TABLE IF NOT EXISTS backfill_progress (
    writer text NOT NULL,
    selection text NOT NULL,
    last_ts timestamptz,
    last_uid integer,
    queued bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (writer, selection)
);

-- The backfill's scan: mapped messages in timestamp order.
CREATE INDEX IF NOT EXISTS physical_timeseries_mapped_ts_uid_idx
    ON physical_timeseries (ts, uid) WHERE logical_uid IS NOT NULL;
