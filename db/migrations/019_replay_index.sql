-- Schema version 19: one index fewer to maintain for every row a replay stores (issue 10).
-- Migration 013 added an index of replayed rows only, for the mapper's per-batch question "was
-- this message's raw message replayed since?". The raw_correlation_id index answers it as well:
-- the mapper asks about messages it is storing now, which have no rows yet in the common case,
-- and the few rows a raw message has are checked for replay_id in the table. Every row a replay
-- wrote paid for the second index.
DROP INDEX IF EXISTS physical_timeseries_replayed_idx;
