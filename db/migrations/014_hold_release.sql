-- Schema version 14: routing by the mapping in force at a message's time, and held messages that
-- can be released (doc/architecture.md, "Mapper", and doc/operations.md, "A sensor was replaced").

-- Mapping changes made here are recorded as made by the migration (008's triggers read this).
SELECT set_config('broker.actor', 'migration', true);

-- Mappings of one physical device never overlap in time, nor those of one logical device: the
-- mapper picks the one mapping whose [start_time, end_time) holds a message's timestamp, so two
-- would make the answer ambiguous. IoTa checked neither, and a back-dated start could break both,
-- so an old database is repaired first: a mapping that runs into the next one of its device is
-- ended where that one starts. Two mappings of one device starting at the same instant cannot be
-- repaired without deleting one; the migration stops and names them instead.
DO $$
DECLARE
    v_clash record;
BEGIN
    SELECT a.physical_uid, a.logical_uid, b.physical_uid AS other_physical_uid,
           b.logical_uid AS other_logical_uid, a.start_time
      INTO v_clash
      FROM physical_logical_map a
      JOIN physical_logical_map b
        ON a.start_time = b.start_time
       AND (a.physical_uid, a.logical_uid) < (b.physical_uid, b.logical_uid)
       AND (a.physical_uid = b.physical_uid OR a.logical_uid = b.logical_uid)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'mappings % → % and % → % both start at %: delete one of them, then migrate again',
            v_clash.physical_uid, v_clash.logical_uid, v_clash.other_physical_uid,
            v_clash.other_logical_uid, v_clash.start_time;
    END IF;
END;
$$;

DO $$
DECLARE
    v_device text;
BEGIN
    FOREACH v_device IN ARRAY ARRAY['physical_uid', 'logical_uid'] LOOP
        EXECUTE format($sql$
            WITH ordered AS (
                SELECT physical_uid, logical_uid, start_time, end_time,
                       lead(start_time) OVER (PARTITION BY %I ORDER BY start_time) AS next_start
                FROM physical_logical_map
            )
            UPDATE physical_logical_map m
            SET end_time = o.next_start
            FROM ordered o
            WHERE o.next_start IS NOT NULL AND (o.end_time IS NULL OR o.end_time > o.next_start)
              AND m.physical_uid = o.physical_uid AND m.logical_uid = o.logical_uid
              AND m.start_time = o.start_time
        $sql$, v_device);
    END LOOP;
END;
$$;

-- The registry event triggers (008) are deferred to commit; run them now, since ALTER TABLE
-- refuses a table with trigger events pending.
SET CONSTRAINTS ALL IMMEDIATE;

-- btree_gist lets one GiST index compare the device uid (=) and the period (&&) together.
CREATE EXTENSION IF NOT EXISTS btree_gist;

ALTER TABLE physical_logical_map DROP CONSTRAINT IF EXISTS physical_logical_map_physical_no_overlap;
ALTER TABLE physical_logical_map ADD CONSTRAINT physical_logical_map_physical_no_overlap
    EXCLUDE USING gist (physical_uid WITH =, tstzrange(start_time, end_time, '[)') WITH &&);
ALTER TABLE physical_logical_map DROP CONSTRAINT IF EXISTS physical_logical_map_logical_no_overlap;
ALTER TABLE physical_logical_map ADD CONSTRAINT physical_logical_map_logical_no_overlap
    EXCLUDE USING gist (logical_uid WITH =, tstzrange(start_time, end_time, '[)') WITH &&);

-- Held messages: rows with logical_uid NULL. hold_reason says why (no_mapping, paused,
-- future_timestamp, past_timestamp); rows stored before this migration keep NULL. A release
-- claims a row by setting logical_uid and release_id in one commit, publishes it, and sets
-- released_at in the next: release_id set with released_at NULL is a release that was
-- interrupted between the two, and the next release of the device publishes it again.
ALTER TABLE physical_timeseries ADD COLUMN IF NOT EXISTS hold_reason text;
ALTER TABLE physical_timeseries ADD COLUMN IF NOT EXISTS release_id uuid;
ALTER TABLE physical_timeseries ADD COLUMN IF NOT EXISTS released_at timestamptz;

-- What is held per device, in time order: the held listing and each release round read this.
CREATE INDEX IF NOT EXISTS physical_timeseries_held_idx
    ON physical_timeseries (physical_uid, ts) WHERE logical_uid IS NULL;
-- Releases that were interrupted between claim and publish confirm.
CREATE INDEX IF NOT EXISTS physical_timeseries_releasing_idx
    ON physical_timeseries (physical_uid, ts)
    WHERE release_id IS NOT NULL AND released_at IS NULL;
