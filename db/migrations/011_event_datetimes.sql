-- Schema version 11: registry events write datetimes and locations the way the API does, which
-- is IoTa's way (doc/compatibility.md).
--
-- Datetimes: to_jsonb writes a timestamptz as `2024-01-01T00:00:00.5+00:00`, trailing zeros cut,
-- which Python 3.10's datetime.fromisoformat (IoTa's runtime, and its clients') refuses. Events
-- now write Python's isoformat: no fraction when the microseconds are zero, otherwise exactly
-- six digits, always in UTC. Locations: a device without one is `{"lat": null, "long": null}`,
-- as IoTa returns it, not `null`.
--
-- The events already stored are rewritten the same way, entity ids of mappings included (they
-- embed start_time), so one mapping keeps one id across the upgrade and replaying the log from
-- the first event still rebuilds the registry. Consumers that kept ids of events published
-- before the upgrade see the new spelling of the same instant afterwards.

-- A timestamptz as Python's isoformat in UTC; infinities as PostgreSQL writes them.
CREATE OR REPLACE FUNCTION registry_event_time(p_ts timestamptz)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN NOT isfinite(p_ts) THEN p_ts::text
        ELSE to_char(p_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
             || CASE WHEN extract(microseconds FROM p_ts)::bigint % 1000000 = 0 THEN ''
                     ELSE to_char(p_ts AT TIME ZONE 'UTC', '.US') END
             || '+00:00' END
$$;

-- The table an entity's rows live in (in the schema the triggers run in).
CREATE OR REPLACE FUNCTION registry_event_table(p_entity text)
RETURNS regclass LANGUAGE sql STABLE AS $$
    SELECT to_regclass(CASE p_entity
        WHEN 'physical_device' THEN 'physical_devices'
        WHEN 'logical_device' THEN 'logical_devices'
        WHEN 'mapping' THEN 'physical_logical_map'
        WHEN 'note' THEN 'device_notes'
        WHEN 'user' THEN 'users' END)
$$;

-- Rewrites the timestamptz columns of an event row (every one, columns added later included) in
-- Python's isoformat, and a device's missing location as IoTa's {lat: null, long: null}.
CREATE OR REPLACE FUNCTION registry_event_present(p_entity text, p_row jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb := p_row;
    v_column name;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) <> 'object' THEN
        RETURN v;
    END IF;
    FOR v_column IN
        SELECT a.attname FROM pg_attribute a
        WHERE a.attrelid = registry_event_table(p_entity) AND a.attnum > 0
          AND NOT a.attisdropped AND a.atttypid = 'timestamptz'::regtype
    LOOP
        IF jsonb_typeof(v -> v_column) = 'string' THEN
            v := jsonb_set(v, ARRAY[v_column::text],
                to_jsonb(registry_event_time((v ->> v_column)::timestamptz)));
        END IF;
    END LOOP;
    IF p_entity IN ('physical_device', 'logical_device') AND v ? 'location'
       AND jsonb_typeof(v -> 'location') = 'null' THEN
        v := jsonb_set(v, '{location}', '{"lat": null, "long": null}'::jsonb);
    END IF;
    RETURN v;
END;
$$;

-- As in 008, plus registry_event_present. The triggers call it by name, so they need no change.
CREATE OR REPLACE FUNCTION registry_event_view(p_entity text, p_row jsonb, p_location geometry)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb := p_row;
BEGIN
    IF p_entity IN ('physical_device', 'logical_device') THEN
        v := jsonb_set(v, '{location}', CASE WHEN p_location IS NULL THEN 'null'::jsonb
            ELSE jsonb_build_object('lat', ST_Y(p_location), 'long', ST_X(p_location)) END);
        v := v #- '{properties,last_msg}';
    END IF;
    RETURN registry_event_present(p_entity, v);
END;
$$;

-- The events already stored, in the same form (the row triggers do not fire on registry_events).
CREATE OR REPLACE FUNCTION pg_temp.present_event_data(p_entity text, p_data jsonb)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(d.key, CASE WHEN d.key IN ('before', 'after')
        THEN registry_event_present(p_entity, d.value) ELSE d.value END), '{}'::jsonb)
    FROM jsonb_each(p_data) d
$$;

UPDATE registry_events e SET data = pg_temp.present_event_data(e.entity, e.data)
WHERE e.data IS DISTINCT FROM pg_temp.present_event_data(e.entity, e.data);

UPDATE registry_events e
SET entity_id = registry_event_entity_id('mapping', coalesce(e.data -> 'after', e.data -> 'before'))
WHERE e.entity = 'mapping'
  AND e.entity_id IS DISTINCT FROM
      registry_event_entity_id('mapping', coalesce(e.data -> 'after', e.data -> 'before'));
