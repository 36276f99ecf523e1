-- Schema version 6: the TTN webhook's background fetch of device metadata. A device created from
-- an uplink carries properties.ttn_metadata_pending until its The Things Stack API record has been
-- stored; this partial index lets the fetcher find those few devices without reading every
-- device's properties (which hold the large last_msg). Queries must repeat the predicate exactly.
CREATE INDEX IF NOT EXISTS physical_devices_ttn_metadata_pending_idx
    ON physical_devices (uid)
    WHERE source_name = 'ttn' AND properties ? 'ttn_metadata_pending';
