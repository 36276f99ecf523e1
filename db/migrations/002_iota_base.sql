-- Schema version 2: the IoTa (DPIclimate/broker) baseline, table for table and column for column,
-- so that an existing IoTa database is already at this version and is left untouched. A fresh
-- database starts here. Everything we add beyond IoTa lives in later, numbered files.

CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE IF NOT EXISTS sources (
    source_name text PRIMARY KEY NOT NULL
);

CREATE TABLE IF NOT EXISTS physical_devices (
    uid integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_name text NOT NULL REFERENCES sources,
    name text NOT NULL,
    location geometry('POINT', 4283),
    last_seen timestamptz,
    source_ids jsonb,
    properties jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX IF NOT EXISTS pd_src_id_idx ON physical_devices USING GIN (source_ids);

CREATE TABLE IF NOT EXISTS device_notes (
    uid integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    physical_uid integer REFERENCES physical_devices,
    ts timestamptz NOT NULL DEFAULT now(),
    note text NOT NULL
);

CREATE TABLE IF NOT EXISTS device_blobs (
    uid integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    physical_uid integer REFERENCES physical_devices,
    ts timestamptz NOT NULL DEFAULT now(),
    data bytea NOT NULL
);

CREATE TABLE IF NOT EXISTS physical_timeseries (
    uid integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    physical_uid integer NOT NULL REFERENCES physical_devices,
    logical_uid integer,
    received_at timestamptz NOT NULL DEFAULT now(),
    ts timestamptz NOT NULL,
    ts_delta interval,
    json_msg jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS raw_messages (
    uid integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_name text NOT NULL REFERENCES sources,
    physical_uid integer,
    correlation_id uuid UNIQUE NOT NULL,
    ts timestamptz NOT NULL,
    json_msg jsonb,
    text_msg text
);

CREATE TABLE IF NOT EXISTS logical_devices (
    uid integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    location geometry('POINT', 4283),
    last_seen timestamptz,
    properties jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS physical_logical_map (
    physical_uid integer NOT NULL REFERENCES physical_devices,
    logical_uid integer NOT NULL REFERENCES logical_devices,
    start_time timestamptz NOT NULL DEFAULT now(),
    end_time timestamptz,
    is_active boolean NOT NULL DEFAULT true,
    CONSTRAINT end_gt_start CHECK (end_time > start_time),
    UNIQUE (logical_uid, start_time),
    PRIMARY KEY (physical_uid, logical_uid, start_time)
);

CREATE TABLE IF NOT EXISTS users (
    uid integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text NOT NULL UNIQUE,
    salt text NOT NULL,
    password text NOT NULL,
    auth_token text NOT NULL,
    valid boolean NOT NULL,
    read_only boolean NOT NULL DEFAULT true
);

CREATE TABLE IF NOT EXISTS version (
    version integer NOT NULL
);

INSERT INTO sources (source_name)
VALUES ('ttn'), ('greenbrain'), ('wombat'), ('ydoc'), ('ict_eagleio'), ('dragino_json'), ('ict_mqtt')
ON CONFLICT DO NOTHING;
