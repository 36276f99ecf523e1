-- Schema version 3: what the router needs beyond IoTa's version 2. Safe on a live IoTa database:
-- it adds, it repairs data that would violate the new rules, and it rewrites no existing rows'
-- meaning.

-- Databases created before IoTa added these sources turn every insert from them into an FK error.
INSERT INTO sources (source_name) VALUES ('dragino_json'), ('ict_mqtt') ON CONFLICT DO NOTHING;

-- IoTa computes ts_delta only on databases upgraded through its 001.sql; fresh installs had NULLs.
CREATE OR REPLACE FUNCTION update_physical_timeseries_ts_delta() RETURNS trigger AS $$
BEGIN
    NEW.ts_delta := NEW.received_at - NEW.ts;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS update_physical_timeseries_ts_delta_trigger ON physical_timeseries;
CREATE TRIGGER update_physical_timeseries_ts_delta_trigger
    BEFORE INSERT OR UPDATE ON physical_timeseries
    FOR EACH ROW EXECUTE FUNCTION update_physical_timeseries_ts_delta();

-- Time-range reads per device (the /messages API, exports) no longer scan the whole table.
CREATE INDEX IF NOT EXISTS physical_timeseries_physical_uid_ts_idx
    ON physical_timeseries (physical_uid, ts);
CREATE INDEX IF NOT EXISTS physical_timeseries_logical_uid_ts_idx
    ON physical_timeseries (logical_uid, ts) WHERE logical_uid IS NOT NULL;

-- Idempotency: msg_key identifies a normalised message (see messageKey() in src/core/message.ts).
-- Rows written before this migration keep NULL, which a unique index allows any number of times.
ALTER TABLE physical_timeseries ADD COLUMN IF NOT EXISTS msg_key uuid;
CREATE UNIQUE INDEX IF NOT EXISTS physical_timeseries_msg_key_idx ON physical_timeseries (msg_key);

-- Device lookups by source id on every ingest batch: IoTa's GIN index (default jsonb_ops) indexes
-- keys separately from values, so with thousands of devices sharing a key such as dev_eui it is
-- little better than a scan; jsonb_path_ops indexes whole paths and serves @> directly.
CREATE INDEX IF NOT EXISTS physical_devices_source_ids_path_idx
    ON physical_devices USING gin (source_ids jsonb_path_ops);

-- Raw messages by device and by time, for re-processing and the API.
CREATE INDEX IF NOT EXISTS raw_messages_source_ts_idx ON raw_messages (source_name, ts);
CREATE INDEX IF NOT EXISTS raw_messages_physical_uid_idx ON raw_messages (physical_uid)
    WHERE physical_uid IS NOT NULL;

-- At most one current mapping per physical and per logical device. IoTa only checked this in
-- code, so an old database may hold several current rows: all but the newest are ended where the
-- newest begins (or a microsecond after their own start, to respect end_gt_start).
WITH ranked AS (
    SELECT physical_uid, logical_uid, start_time,
           first_value(start_time) OVER w AS newest_start,
           row_number() OVER w AS rn
    FROM physical_logical_map
    WHERE end_time IS NULL
    WINDOW w AS (PARTITION BY physical_uid ORDER BY start_time DESC, logical_uid DESC)
)
UPDATE physical_logical_map m
SET end_time = greatest(r.newest_start, m.start_time + interval '1 microsecond')
FROM ranked r
WHERE r.rn > 1 AND m.physical_uid = r.physical_uid AND m.logical_uid = r.logical_uid
  AND m.start_time = r.start_time;

WITH ranked AS (
    SELECT physical_uid, logical_uid, start_time,
           first_value(start_time) OVER w AS newest_start,
           row_number() OVER w AS rn
    FROM physical_logical_map
    WHERE end_time IS NULL
    WINDOW w AS (PARTITION BY logical_uid ORDER BY start_time DESC, physical_uid DESC)
)
UPDATE physical_logical_map m
SET end_time = greatest(r.newest_start, m.start_time + interval '1 microsecond')
FROM ranked r
WHERE r.rn > 1 AND m.physical_uid = r.physical_uid AND m.logical_uid = r.logical_uid
  AND m.start_time = r.start_time;

CREATE UNIQUE INDEX IF NOT EXISTS physical_logical_map_one_current_pd_idx
    ON physical_logical_map (physical_uid) WHERE end_time IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS physical_logical_map_one_current_ld_idx
    ON physical_logical_map (logical_uid) WHERE end_time IS NULL;
