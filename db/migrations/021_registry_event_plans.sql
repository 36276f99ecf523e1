-- Schema version 21: the registry event triggers stop planning their queries on every event
-- (issue 11). Creating a device (the webhook's first uplink of a new device) writes one event;
-- PostgreSQL planned two of the capture's queries afresh for each, 0.16 ms of a 0.55 ms append:
--
-- - registry_event_redact was an SQL function with a sub-select, which PostgreSQL 15 neither
--   inlines nor caches: every call planned the user-column filter, even for the devices and
--   mappings it returns untouched. As PL/pgSQL it returns those at once and plans the filter
--   once per session.
-- - registry_event_present's column query kept a custom plan per call (the table is a function
--   of the parameter, which a custom plan folds to a constant, so the generic plan never looked
--   as cheap); the generic plan is the same index scan of pg_attribute.

CREATE OR REPLACE FUNCTION registry_event_redact(p_entity text, p_row jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_entity <> 'user' OR p_row IS NULL THEN
        RETURN p_row;
    END IF;
    RETURN (SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb) FROM jsonb_each(p_row)
            WHERE key !~* '(password|salt|token|secret|hash)');
END;
$$;

ALTER FUNCTION registry_event_present(text, jsonb) SET plan_cache_mode = force_generic_plan;
