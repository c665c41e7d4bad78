-- ruvector_healing: privileges (runs after every function exists).

-- Reading: issues hold metrics and names, not vectors.
GRANT USAGE ON SCHEMA ruvector_healing TO PUBLIC;
GRANT SELECT ON ruvector_healing.issues TO PUBLIC;

-- Writing state is not for PUBLIC: a health check records issues.
REVOKE ALL ON FUNCTION ruvector_dag_health_check(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_healing.record_issue(regclass, oid, text, text, int, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_healing.resolve_issues(oid, bigint[], bool) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvector_dag_health_check(regclass) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_healing.record_issue(regclass, oid, text, text, int, jsonb) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_healing.resolve_issues(oid, bigint[], bool) TO ruvector_healer;
GRANT INSERT, UPDATE ON ruvector_healing.issues TO ruvector_healer;
GRANT USAGE ON SEQUENCE ruvector_healing.issues_issue_id_seq TO ruvector_healer;

-- Tuning records its result: like the health check, for ruvector_healer.
GRANT SELECT ON ruvector_healing.search_settings TO PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_tune_search(regclass, float8, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvector_dag_tune_search(regclass, float8, int, int) TO ruvector_healer;
GRANT INSERT ON ruvector_healing.search_settings TO ruvector_healer;
GRANT USAGE ON SEQUENCE ruvector_healing.search_settings_setting_id_seq TO ruvector_healer;

-- Repairs: reading the history is for everyone (names, figures, errors);
-- requesting, cancelling and rolling back is for ruvector_healer, through
-- SECURITY DEFINER functions (members get no write access to the journal).
GRANT SELECT ON ruvector_healing.repairs, ruvector_healing.repair_steps,
                ruvector_healing.index_policies TO PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_repair_index(regclass, text, bool, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_repair(regclass, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_cancel_repair(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_rollback(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_recover_repairs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvector_dag_repair_index(regclass, text, bool, jsonb) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_dag_repair(regclass, bigint) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_dag_cancel_repair(bigint) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_dag_rollback(bigint) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_dag_recover_repairs() TO ruvector_healer;

-- Policies and observations: readable by everyone; policies are set by
-- ruvector_healer members, observations written by the background cycle.
GRANT SELECT ON ruvector_healing.observations TO PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_set_index_policy(regclass, bool, text, bool, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_set_table_policy(regclass, bool, text, bool, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_set_schema_policy(name, bool, text, bool, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_set_database_policy(bool, text, bool, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_reset_policy(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_healing.set_policy(text, text, text, bool, text, bool, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvector_dag_set_index_policy(regclass, bool, text, bool, jsonb, text) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_dag_set_table_policy(regclass, bool, text, bool, jsonb, text) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_dag_set_schema_policy(name, bool, text, bool, jsonb, text) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_dag_set_database_policy(bool, text, bool, jsonb, text) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_dag_reset_policy(text, text, text) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_healing.set_policy(text, text, text, bool, text, bool, jsonb, text) TO ruvector_healer;
GRANT INSERT, UPDATE, DELETE ON ruvector_healing.index_policies TO ruvector_healer;
REVOKE ALL ON FUNCTION ruvector_dag_run_cycle() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvector_dag_run_cycle() TO ruvector_healer;

-- Restores: resolving OIDs again writes every history table (the cycle and
-- the repair workers run it, as superuser).
REVOKE ALL ON FUNCTION ruvector_healing.adopt_restored() FROM PUBLIC;

-- ---------------------------------------------------------------- statistics
-- One row per pgvector index the caller may see (the history tables' rule:
-- SELECT on the table, or pg_read_all_stats). Reads only what cycles
-- recorded and PostgreSQL's statistics: it never inspects an index.
-- The statistics view's query, in a PL/pgSQL function so that each
-- session plans it once (planning the joins cost more than running them:
-- a scrape every 15 s pays only the run). SECURITY INVOKER: row security
-- and ruvector_healing.visible() apply to the caller.
CREATE FUNCTION ruvector_healing.stat_indexes()
RETURNS TABLE (indexrelid oid, schemaname text, relname text, indexrelname text, am text,
    options text[], valid boolean, size_bytes bigint, idx_scan bigint,
    rows_inserted bigint, rows_updated bigint, rows_deleted bigint,
    writes_since text, writes_counted_from timestamptz,
    unreachable_ratio float8, fragmentation float8, list_balance float8,
    centroid_drift float8, list_size_p50 float8, list_size_p90 float8,
    list_size_p99 float8, list_size_max float8,
    recall float8, recall_ci_low float8, recall_ci_high float8,
    recall_target float8, recall_setting text, recall_setting_value integer,
    recall_at timestamptz, inspected_at timestamptz, verified_at timestamptz,
    verify_violations bigint, health_score integer,
    open_issues_critical bigint, open_issues_high bigint,
    open_issues_medium bigint, open_issues_low bigint,
    last_repair_id bigint, last_repair_status text, last_repair_at timestamptz,
    circuit_breaker_open boolean, next_check_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT c.oid AS indexrelid,
           n.nspname::text AS schemaname,
           t.relname::text AS relname,
           c.relname::text AS indexrelname,
           am.amname::text AS am,
           coalesce(c.reloptions, '{}') AS options,
           x.indisvalid AS valid,
           pg_catalog.pg_relation_size(c.oid) AS size_bytes,
           -- The functions behind pg_stat_all_indexes / pg_stat_all_tables
           -- (those views group over every relation: slower to plan and run).
           pg_catalog.pg_stat_get_numscans(c.oid) AS idx_scan,
           pg_catalog.pg_stat_get_tuples_inserted(t.oid) - coalesce(w.n_tup_ins, 0) AS rows_inserted,
           pg_catalog.pg_stat_get_tuples_updated(t.oid) - coalesce(w.n_tup_upd, 0) AS rows_updated,
           pg_catalog.pg_stat_get_tuples_deleted(t.oid) - coalesce(w.n_tup_del, 0) AS rows_deleted,
           coalesce(w.since, 'stats_reset') AS writes_since,
           coalesce(w.counted_at, s.db_stats_reset) AS writes_counted_from,
           st.unreachable_ratio,
           st.fragmentation,
           st.cluster_balance AS list_balance,
           st.centroid_drift,
           st.list_size_p50,
           st.list_size_p90,
           st.list_size_p99,
           st.list_size_max,
           st.recall,
           st.recall_ci_low,
           st.recall_ci_high,
           s.target AS recall_target,
           st.recall_setting,
           st.recall_setting_value,
           st.recall_at,
           st.inspected_at,
           st.verified_at,
           st.verify_violations,
           ruvector_healing.health_score(st.recall, s.target, st.unreachable_ratio, st.fragmentation,
               st.connectivity_score, st.cluster_balance, st.centroid_drift) AS health_score,
           coalesce(iss.critical, 0) AS open_issues_critical,
           coalesce(iss.high, 0) AS open_issues_high,
           coalesce(iss.medium, 0) AS open_issues_medium,
           coalesce(iss.low, 0) AS open_issues_low,
           lr.repair_id AS last_repair_id,
           lr.status AS last_repair_status,
           coalesce(lr.finished_at, lr.requested_at) AS last_repair_at,
           coalesce(br.open, false) AS circuit_breaker_open,
           s.next_check_at
      FROM pg_catalog.pg_index x
      JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = c.relam AND am.amname IN ('hnsw', 'ivfflat')
      JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      -- Once per query: the settings, the next cycle, the statistics' reset.
      CROSS JOIN (SELECT coalesce(nullif(current_setting('ruvector.dag_healing_target_recall', true), '')::float8,
                                  0.95) AS target,
                         coalesce(nullif(current_setting('ruvector.dag_healing_max_attempts', true), '')::int,
                                  3) AS max_attempts,
                         ruvector_healing.next_cycle_at() AS next_check_at,
                         pg_catalog.pg_stat_get_db_stat_reset_time(
                             (SELECT d.oid FROM pg_catalog.pg_database d
                               WHERE d.datname = pg_catalog.current_database())) AS db_stats_reset
                   OFFSET 0) s
      -- The text comparisons below use the default collation (catalog names
      -- are "C"), or the history tables' indexes would not be used.
      LEFT JOIN ruvector_healing.index_writes w
             ON w.schema_name = n.nspname::text COLLATE "default"
            AND w.relname = c.relname::text COLLATE "default" AND w.index_oid = c.oid
      LEFT JOIN ruvector_healing.index_stats st
             ON st.schema_name = n.nspname::text COLLATE "default"
            AND st.relname = c.relname::text COLLATE "default"
      LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE i.severity = 'critical') AS critical,
                                count(*) FILTER (WHERE i.severity = 'high') AS high,
                                count(*) FILTER (WHERE i.severity = 'medium') AS medium,
                                count(*) FILTER (WHERE i.severity = 'low') AS low
                           FROM ruvector_healing.issues i
                          WHERE i.index_oid = c.oid AND i.status = 'open') iss ON true
      LEFT JOIN LATERAL (SELECT rp.repair_id, rp.status, rp.finished_at, rp.requested_at
                           FROM ruvector_healing.repairs rp
                          WHERE rp.schema_name = n.nspname::text COLLATE "default"
                            AND rp.relname = c.relname::text COLLATE "default" AND NOT rp.dry_run
                          ORDER BY rp.repair_id DESC LIMIT 1) lr ON true
      -- The circuit breaker, by the rule the repair guard applies
      -- (`plan::breaker_open`): the last max_attempts finished repairs failed
      -- or were rolled back, the newest within a day.
      LEFT JOIN LATERAL (SELECT count(*) >= s.max_attempts AND bool_and(f.status IN ('failed', 'rolled_back'))
                                AND max(f.finished_at) > now() - interval '1 day' AS open
                           FROM (SELECT rp.status, rp.finished_at FROM ruvector_healing.repairs rp
                                  WHERE rp.schema_name = n.nspname::text COLLATE "default"
                                    AND rp.relname = c.relname::text COLLATE "default" AND NOT rp.dry_run
                                    AND rp.status IN ('done', 'failed', 'rolled_back')
                                  ORDER BY rp.finished_at DESC LIMIT s.max_attempts) f) br ON true
     WHERE ruvector_healing.visible(t.oid);
END
$fn$;

CREATE VIEW ruvector_dag_stat_indexes WITH (security_invoker = true) AS
SELECT * FROM ruvector_healing.stat_indexes();

-- One row per running repair with its build's progress (see
-- ruvector_healing.repair_progress(), which applies the same rule).
CREATE VIEW ruvector_dag_repair_progress AS
SELECT * FROM ruvector_healing.repair_progress();

GRANT SELECT ON ruvector_healing.index_writes, ruvector_healing.index_stats TO PUBLIC;
REVOKE ALL ON FUNCTION ruvector_healing.observe(oid, text, text, oid, jsonb, float8, float8) FROM PUBLIC;
GRANT SELECT ON ruvector_dag_stat_indexes, ruvector_dag_repair_progress TO PUBLIC;
REVOKE ALL ON FUNCTION ruvector_healing.count_writes_from(oid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_healing.keep_write_count(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_stat_reset() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvector_dag_stat_reset() TO ruvector_healer;
