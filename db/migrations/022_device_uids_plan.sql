-- Schema version 22: broker_device_uids (017) keeps its plan (issue 11). As an SQL function with
-- a SET clause it was never inlined, and PostgreSQL 15 plans an SQL function's query on every
-- call: 0.1 ms of planning for each batch's lookup, more than the lookups themselves. PL/pgSQL
-- keeps the plan for the session. Same arguments, same result, still no sequential scans.
CREATE OR REPLACE FUNCTION broker_device_uids(p_source text, p_keys jsonb[])
RETURNS TABLE (ord bigint, uid integer)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    SELECT v.ord,
           (SELECT d.uid FROM physical_devices d
            WHERE d.source_name = p_source AND d.source_ids @> v.k
            ORDER BY d.uid + 0 LIMIT 1)
    FROM unnest(p_keys) WITH ORDINALITY AS v(k, ord);
END;
$$;
