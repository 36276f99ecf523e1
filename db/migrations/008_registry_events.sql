-- Schema version 8: the registry event log (doc/events.md).
--
-- Every create, update and delete of a physical device, logical device, mapping, device note and
-- user writes one row into registry_events in the same transaction as the change, whoever made
-- it (API, CLI, a front-end, psql), because triggers do it, not application code.
--
-- Order: id is the order. The row triggers are deferred constraint triggers, so they run at
-- COMMIT, after every other statement of the transaction; each takes a transaction-level
-- advisory lock before it draws an id, and holds it until the commit is visible. Transactions
-- that write events therefore draw their ids and become visible one after another: a reader
-- never sees event n+1 while event n may still appear later, so "everything after the last id I
-- saw" never skips a late committer. The lock is held only for the commit itself, so a long
-- transaction (an operator in psql) never blocks anyone else's registry changes.

CREATE TABLE IF NOT EXISTS registry_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    entity text NOT NULL
        CHECK (entity IN ('physical_device', 'logical_device', 'mapping', 'note', 'user')),
    operation text NOT NULL
        CHECK (operation IN ('create', 'update', 'delete', 'start', 'end', 'pause', 'resume')),
    entity_id text NOT NULL,
    actor text NOT NULL,
    data jsonb NOT NULL,
    published_at timestamptz
);

-- The relay reads the unpublished tail; readers filter by entity.
CREATE INDEX IF NOT EXISTS registry_events_unpublished_idx
    ON registry_events (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS registry_events_entity_idx ON registry_events (entity, id);

-- What a row looks like in an event: every column (columns added later included), location as
-- {lat, long} like the API, without properties.last_msg (a copy of the last message: telemetry,
-- not registry state, rewritten on every message) and without anything secret: users' password,
-- salt and token columns, and any later column whose name says it is one.
CREATE OR REPLACE FUNCTION registry_event_view(p_entity text, p_row jsonb, p_location geometry)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb := p_row;
BEGIN
    IF p_entity IN ('physical_device', 'logical_device') THEN
        v := jsonb_set(v, '{location}', CASE WHEN p_location IS NULL THEN 'null'::jsonb
            ELSE jsonb_build_object('lat', ST_Y(p_location), 'long', ST_X(p_location)) END);
        v := v #- '{properties,last_msg}';
    END IF;
    RETURN v;
END;
$$;

CREATE OR REPLACE FUNCTION registry_event_redact(p_entity text, p_row jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_entity <> 'user' OR p_row IS NULL THEN p_row
        ELSE (SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb) FROM jsonb_each(p_row)
              WHERE key !~* '(password|salt|token|secret|hash)') END
$$;

-- Appends one event. Every writer goes through here so every writer takes the order lock first.
CREATE OR REPLACE FUNCTION registry_event_append(
    p_entity text, p_operation text, p_entity_id text, p_data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- (4715, 8): the two-key form lives apart from the one-key locks used elsewhere.
    PERFORM pg_advisory_xact_lock(4715, 8);
    INSERT INTO registry_events (entity, operation, entity_id, actor, data)
    VALUES (p_entity, p_operation, p_entity_id,
            coalesce(nullif(current_setting('broker.actor', true), ''), 'database'), p_data);
    -- Delivered at commit; identical notifications of one transaction are folded into one.
    PERFORM pg_notify('broker_registry_events', '');
END;
$$;

CREATE OR REPLACE FUNCTION registry_event_entity_id(p_entity text, p_view jsonb)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_entity = 'mapping'
        THEN concat_ws(':', p_view->>'physical_uid', p_view->>'logical_uid', p_view->>'start_time')
        ELSE p_view->>'uid' END
$$;

-- The row trigger (argument: the entity). TimeZone is UTC inside so timestamps in the event
-- data, and mapping ids, read the same whatever the session's time zone.
CREATE OR REPLACE FUNCTION registry_event_capture() RETURNS trigger
LANGUAGE plpgsql SET TimeZone = 'UTC' AS $$
DECLARE
    v_entity text := TG_ARGV[0];
    v_device boolean := TG_ARGV[0] IN ('physical_device', 'logical_device');
    v_before jsonb;
    v_after jsonb;
    v_changed jsonb;
    v_operation text;
BEGIN
    -- Separate IFs: PL/pgSQL resolves OLD.location when it evaluates an expression, so an
    -- expression naming it must never run for a table without the column.
    IF TG_OP <> 'INSERT' THEN
        IF v_device THEN
            v_before := registry_event_view(v_entity, to_jsonb(OLD), OLD.location);
        ELSE
            v_before := registry_event_view(v_entity, to_jsonb(OLD), NULL);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF v_device THEN
            v_after := registry_event_view(v_entity, to_jsonb(NEW), NEW.location);
        ELSE
            v_after := registry_event_view(v_entity, to_jsonb(NEW), NULL);
        END IF;
    END IF;

    IF TG_OP = 'INSERT' THEN
        PERFORM registry_event_append(v_entity, CASE WHEN v_entity = 'mapping' THEN 'start' ELSE 'create' END,
            registry_event_entity_id(v_entity, v_after),
            jsonb_build_object('after', registry_event_redact(v_entity, v_after)));
        RETURN NULL;
    END IF;

    IF TG_OP = 'DELETE' THEN
        PERFORM registry_event_append(v_entity, 'delete', registry_event_entity_id(v_entity, v_before),
            jsonb_build_object('before', registry_event_redact(v_entity, v_before)));
        RETURN NULL;
    END IF;

    -- Column names only, secret ones included: "the password changed" is news, its value is not.
    SELECT coalesce(jsonb_agg(a.key ORDER BY a.key), '[]'::jsonb) INTO v_changed
    FROM jsonb_each(v_after) a LEFT JOIN jsonb_each(v_before) b ON b.key = a.key
    WHERE a.value IS DISTINCT FROM b.value;
    IF jsonb_array_length(v_changed) = 0 THEN
        RETURN NULL;
    END IF;

    v_operation := 'update';
    IF v_entity = 'mapping' THEN
        IF OLD.end_time IS NULL AND NEW.end_time IS NOT NULL THEN
            v_operation := 'end';
        ELSIF OLD.end_time IS NULL AND NEW.end_time IS NULL
              AND OLD.is_active IS DISTINCT FROM NEW.is_active THEN
            v_operation := CASE WHEN NEW.is_active THEN 'resume' ELSE 'pause' END;
        END IF;
    END IF;
    PERFORM registry_event_append(v_entity, v_operation, registry_event_entity_id(v_entity, v_after),
        jsonb_build_object('before', registry_event_redact(v_entity, v_before),
                           'after', registry_event_redact(v_entity, v_after),
                           'changed', v_changed));
    RETURN NULL;
END;
$$;

-- One event per row of a whole table, in key order: `delete` events for a TRUNCATE (which fires
-- no row triggers; without them a truncated table would live on in a replay), and the opening
-- snapshot below (`create`/`start` events).
CREATE OR REPLACE FUNCTION registry_event_all_rows(
    p_schema text, p_table text, p_entity text, p_deleting boolean)
RETURNS void LANGUAGE plpgsql SET TimeZone = 'UTC' AS $$
DECLARE
    v_location text := CASE WHEN p_entity IN ('physical_device', 'logical_device')
        THEN 't.location' ELSE 'NULL::geometry' END;
    v_order text := CASE WHEN p_entity = 'mapping'
        THEN 't.physical_uid, t.logical_uid, t.start_time' ELSE 't.uid' END;
    v_row record;
BEGIN
    FOR v_row IN EXECUTE format(
        'SELECT registry_event_view(%L, to_jsonb(t), %s) AS v FROM %I.%I t ORDER BY %s',
        p_entity, v_location, p_schema, p_table, v_order)
    LOOP
        IF p_deleting THEN
            PERFORM registry_event_append(p_entity, 'delete',
                registry_event_entity_id(p_entity, v_row.v),
                jsonb_build_object('before', registry_event_redact(p_entity, v_row.v)));
        ELSE
            PERFORM registry_event_append(p_entity,
                CASE WHEN p_entity = 'mapping' THEN 'start' ELSE 'create' END,
                registry_event_entity_id(p_entity, v_row.v),
                jsonb_build_object('after', registry_event_redact(p_entity, v_row.v)));
        END IF;
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION registry_event_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM registry_event_all_rows(TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], true);
    RETURN NULL;
END;
$$;

-- The snapshot below is recorded as made by the migration.
SELECT set_config('broker.actor', 'migration', true);

-- The noise filter, evaluated for every updated row: the ingest path and the mapper rewrite
-- last_seen and properties.last_msg (and the ingest path source_ids, usually to the same value)
-- on every message; only a change to anything else is an event. The device tables' filters name
-- their columns because they sit on that hot path (a whole-row to_jsonb, location rendered as
-- GeoJSON, made every sighting several times slower): a migration that adds a column to a
-- device table adds it to its filter here.
DO $$
DECLARE
    v_table text;
    v_entity text;
    v_filter text;
    v_device_filter constant text :=
        'OLD.name IS DISTINCT FROM NEW.name'
        ' OR OLD.location::text IS DISTINCT FROM NEW.location::text'
        ' OR (OLD.properties - ''last_msg'') IS DISTINCT FROM (NEW.properties - ''last_msg'')';
BEGIN
    FOR v_table, v_entity, v_filter IN VALUES
        ('physical_devices', 'physical_device', v_device_filter
            || ' OR OLD.source_name IS DISTINCT FROM NEW.source_name'
            || ' OR OLD.source_ids IS DISTINCT FROM NEW.source_ids'),
        ('logical_devices', 'logical_device', v_device_filter),
        ('physical_logical_map', 'mapping', 'to_jsonb(OLD) IS DISTINCT FROM to_jsonb(NEW)'),
        ('device_notes', 'note', 'to_jsonb(OLD) IS DISTINCT FROM to_jsonb(NEW)'),
        ('users', 'user', 'to_jsonb(OLD) IS DISTINCT FROM to_jsonb(NEW)')
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS registry_event_write ON %I', v_table);
        EXECUTE format('DROP TRIGGER IF EXISTS registry_event_update ON %I', v_table);
        EXECUTE format('DROP TRIGGER IF EXISTS registry_event_truncate ON %I', v_table);
        -- Deferred: runs at COMMIT (see the top of this file). WHEN is evaluated at the change
        -- itself, so a filtered-out update never even queues a trigger event.
        EXECUTE format('CREATE CONSTRAINT TRIGGER registry_event_write AFTER INSERT OR DELETE ON %I '
            'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION registry_event_capture(%L)',
            v_table, v_entity);
        EXECUTE format('CREATE CONSTRAINT TRIGGER registry_event_update AFTER UPDATE ON %I '
            'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (%s) '
            'EXECUTE FUNCTION registry_event_capture(%L)', v_table, v_filter, v_entity);
        EXECUTE format('CREATE TRIGGER registry_event_truncate BEFORE TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION registry_event_truncate(%L)', v_table, v_entity);
        -- The log opens with what the registry already holds (an IoTa database upgraded in
        -- place), so replaying it from the first event rebuilds the whole registry.
        PERFORM registry_event_all_rows(current_schema(), v_table, v_entity, false);
    END LOOP;
END;
$$;
