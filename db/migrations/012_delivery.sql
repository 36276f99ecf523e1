-- Schema version 12: where the writers keep messages until their destination takes them, the
-- shared request budget of a rate-limited destination, and protection of the Ubidots label.
--
-- delivery_queue: one row per (writer, message). A writer's intake inserts a batch of messages
-- from its RabbitMQ queue in one statement and only then acknowledges them, so no message is
-- held unacknowledged while a destination is down (RabbitMQ's 30-minute consumer timeout and the
-- quorum queue's delivery limit then never come into play). The writer's delivery loops claim
-- due rows (next_attempt_at <= now, no live claim) with FOR UPDATE SKIP LOCKED, so several
-- copies of one writer share the work, and either mark them delivered, reschedule them with
-- backoff (attempts + 1), or delete them after their dead letter was confirmed.
-- Delivered rows stay (body cleared) for a while so that a redelivery or republish of the same
-- message (same msg_key) is recognised and not delivered twice; they are pruned afterwards.
CREATE TABLE IF NOT EXISTS delivery_queue (
    id bigserial PRIMARY KEY,
    writer text NOT NULL,
    msg_key uuid NOT NULL,
    l_uid integer NOT NULL,
    p_uid integer NOT NULL,
    correlation_id text NOT NULL,
    -- The message exactly as received (text, so key order survives); NULL once delivered.
    body text,
    received_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    last_error text,
    delivered_at timestamptz,
    UNIQUE (writer, msg_key)
);

-- Claims and the lag metric: a writer's pending rows in arrival order.
CREATE INDEX IF NOT EXISTS delivery_queue_pending
    ON delivery_queue (writer, id) WHERE delivered_at IS NULL;
-- Per-device claims (Ubidots coalesces one device's messages into one request).
CREATE INDEX IF NOT EXISTS delivery_queue_pending_device
    ON delivery_queue (writer, l_uid, id) WHERE delivered_at IS NULL;
-- Pruning remembered deliveries.
CREATE INDEX IF NOT EXISTS delivery_queue_delivered
    ON delivery_queue (writer, delivered_at) WHERE delivered_at IS NOT NULL;

-- A request budget shared by every process that spends it (e.g. one Ubidots token): a
-- generic-cell-rate "theoretical arrival time". Taking a slot moves `tat` forward by one
-- interval in one atomic UPDATE; the caller sends when the database's clock reaches its slot.
-- A 429 or Retry-After pushes `tat` forward for every copy at once.
CREATE TABLE IF NOT EXISTS rate_limits (
    name text PRIMARY KEY,
    tat timestamptz NOT NULL DEFAULT now()
);

-- The Ubidots writer chooses a device's label once and stores it in
-- logical_devices.properties.ubidots.label before its first request; every later message of the
-- device goes to that label. IoTa's API and CLI replace `properties` whole, so an update made
-- from a copy read before the label was stored (or one that simply leaves `ubidots` out) would
-- drop it, and the next message would create a second Ubidots device. This trigger keeps the
-- stored label whenever an update's new properties carry none; a label given explicitly wins.
CREATE OR REPLACE FUNCTION keep_ubidots_label() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_label jsonb := OLD.properties -> 'ubidots' -> 'label';
    new_ubidots jsonb := NEW.properties -> 'ubidots';
BEGIN
    IF old_label IS NULL OR jsonb_typeof(old_label) <> 'string' THEN
        RETURN NEW;
    END IF;
    IF new_ubidots IS NOT NULL AND jsonb_typeof(new_ubidots) = 'object'
       AND new_ubidots ? 'label' THEN
        RETURN NEW;
    END IF;
    IF new_ubidots IS NULL OR jsonb_typeof(new_ubidots) <> 'object' THEN
        new_ubidots := '{}'::jsonb;
    END IF;
    NEW.properties := jsonb_set(
        COALESCE(NEW.properties, '{}'::jsonb),
        '{ubidots}',
        new_ubidots || jsonb_build_object('label', old_label)
    );
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS logical_devices_keep_ubidots_label ON logical_devices;
CREATE TRIGGER logical_devices_keep_ubidots_label
    BEFORE UPDATE OF properties ON logical_devices
    FOR EACH ROW EXECUTE FUNCTION keep_ubidots_label();
