-- Schema version 17: an outbox for the ingest front-ends. While PostgreSQL is up a stored raw row
-- is already durable, so a front-end that cannot publish (RabbitMQ down or restarting) stores the
-- normalised messages it would have published here, in the same transaction as the raw rows'
-- device links, answers its sender, and a relay publishes the rows in id order once RabbitMQ is
-- back, deleting each only after RabbitMQ confirmed it. The body is kept as the exact text that
-- would have been published (jsonb would reorder its keys).
CREATE TABLE IF NOT EXISTS ingest_outbox (
    id bigserial PRIMARY KEY,
    source_name text NOT NULL REFERENCES sources (source_name),
    correlation_id uuid NOT NULL,
    -- The message's msg_key (AMQP message_id): a message published twice is stored once downstream.
    msg_key uuid NOT NULL,
    physical_uid integer NOT NULL,
    body text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ingest_outbox_source_id_idx ON ingest_outbox (source_name, id);
