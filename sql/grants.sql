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
