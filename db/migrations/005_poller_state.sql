-- Schema version 5: per-device progress of the polled vendor APIs (GreenBrain, ICT EagleIO,
-- AxisTech). A row moves forward only after the data it stands for is stored raw and its
-- normalised messages are confirmed by RabbitMQ, so a restart or a failed publish never skips
-- data (IoTa kept this in memory and in device properties, and advanced it first).
--
-- device_key: the poller's own key for a device: GreenBrain sensor group id (as text), EagleIO
-- group key (first word of the node names), AxisTech station code.
-- last_hash: hash of the last response content processed for the device (GreenBrain, EagleIO).
-- last_ts: time of the newest record processed (AxisTech; for the others the newest reading).
CREATE TABLE IF NOT EXISTS poller_state (
    source_name text NOT NULL,
    device_key text NOT NULL,
    last_hash text,
    last_ts timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_name, device_key)
);

-- An IoTa database upgraded in place carries IoTa's progress in physical_devices. Copy it once,
-- here, so the first poll after the switch does not publish everything again. Rows written later
-- come only from the pollers themselves. GreenBrain's hash is of the raw response text, which we
-- compute the same way; EagleIO's hashes cannot be reproduced, so only its last_seen is kept.
INSERT INTO poller_state (source_name, device_key, last_hash, last_ts)
SELECT DISTINCT ON (source_ids ->> 'sensor_group_id')
       'greenbrain', source_ids ->> 'sensor_group_id', properties ->> 'last_message_hash', last_seen
FROM physical_devices
WHERE source_name = 'greenbrain' AND source_ids ->> 'sensor_group_id' IS NOT NULL
ORDER BY source_ids ->> 'sensor_group_id', uid
ON CONFLICT DO NOTHING;

INSERT INTO poller_state (source_name, device_key, last_hash, last_ts)
SELECT DISTINCT ON (source_ids ->> 'sensor_group_id')
       'ict_eagleio', source_ids ->> 'sensor_group_id', NULL, last_seen
FROM physical_devices
WHERE source_name = 'ict_eagleio' AND source_ids ->> 'sensor_group_id' IS NOT NULL
  AND last_seen IS NOT NULL
ORDER BY source_ids ->> 'sensor_group_id', uid
ON CONFLICT DO NOTHING;

INSERT INTO poller_state (source_name, device_key, last_hash, last_ts)
SELECT DISTINCT ON (source_ids ->> 'serial_no')
       'axistech', source_ids ->> 'serial_no', NULL, last_seen
FROM physical_devices
WHERE source_name = 'axistech' AND source_ids ->> 'serial_no' IS NOT NULL
  AND last_seen IS NOT NULL
ORDER BY source_ids ->> 'serial_no', uid
ON CONFLICT DO NOTHING;
