-- Schema version 20: a device's sighting (last_seen and properties.last_msg, rewritten on every
-- message by the ingest path and the mapper) becomes a heap-only update (issue 11).
--
-- PostgreSQL can update a row without touching its indexes only when no indexed column changes
-- and the row's page has room for the new version. Two things stopped that on physical_devices:
-- the partial index of pending TTN metadata (006) has `properties` in its predicate, so any change
-- to properties counts as a change to an indexed column; and pages were filled to the brim. Every
-- sighting therefore inserted into all four indexes, two of them GIN indexes on source_ids (one
-- with fastupdate off, 017): the costliest statement of the webhook's batch, 99 % of its updates
-- not heap-only in a bench of 30,000 uplinks.
--
-- The pending devices are now listed in a table of their own, kept by triggers from the marker in
-- properties (which stays the truth an operator sees and edits); the triggers' WHEN clauses test
-- one top-level key, cheap beside the registry event filter every update already evaluates.

CREATE TABLE IF NOT EXISTS ttn_metadata_pending (
    uid integer PRIMARY KEY REFERENCES physical_devices (uid) ON DELETE CASCADE
);

CREATE OR REPLACE FUNCTION ttn_metadata_pending_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source_name = 'ttn' AND NEW.properties ? 'ttn_metadata_pending' THEN
        INSERT INTO ttn_metadata_pending (uid) VALUES (NEW.uid) ON CONFLICT DO NOTHING;
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM ttn_metadata_pending WHERE uid = NEW.uid;
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS ttn_metadata_pending_insert ON physical_devices;
CREATE TRIGGER ttn_metadata_pending_insert AFTER INSERT ON physical_devices
    FOR EACH ROW WHEN (NEW.properties ? 'ttn_metadata_pending')
    EXECUTE FUNCTION ttn_metadata_pending_track();

DROP TRIGGER IF EXISTS ttn_metadata_pending_update ON physical_devices;
CREATE TRIGGER ttn_metadata_pending_update AFTER UPDATE ON physical_devices
    FOR EACH ROW WHEN (
        (OLD.properties ? 'ttn_metadata_pending') IS DISTINCT FROM (NEW.properties ? 'ttn_metadata_pending')
        OR OLD.source_name IS DISTINCT FROM NEW.source_name)
    EXECUTE FUNCTION ttn_metadata_pending_track();

INSERT INTO ttn_metadata_pending (uid)
SELECT uid FROM physical_devices
WHERE source_name = 'ttn' AND properties ? 'ttn_metadata_pending'
ON CONFLICT DO NOTHING;

DROP INDEX IF EXISTS physical_devices_ttn_metadata_pending_idx;

-- Room on each page for the next versions of its rows (applies to pages written from now on; a
-- device table is small, so the space is cheap). The mapper's logical sightings are the same.
ALTER TABLE physical_devices SET (fillfactor = 50);
ALTER TABLE logical_devices SET (fillfactor = 50);
