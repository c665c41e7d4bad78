-- ruvector_healing: privileges (runs after every function exists).

-- Reading: issues hold metrics and names, not vectors.
GRANT USAGE ON SCHEMA ruvector_healing TO PUBLIC;
GRANT SELECT ON ruvector_healing.issues TO PUBLIC;

-- Writing state is not for PUBLIC: a health check records issues.
REVOKE ALL ON FUNCTION ruvector_dag_health_check(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_healing.record_issue(regclass, oid, text, text, int, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ruvector_healing.resolve_issues(oid, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvector_dag_health_check(regclass) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_healing.record_issue(regclass, oid, text, text, int, jsonb) TO ruvector_healer;
GRANT EXECUTE ON FUNCTION ruvector_healing.resolve_issues(oid, bigint[]) TO ruvector_healer;
GRANT INSERT, UPDATE ON ruvector_healing.issues TO ruvector_healer;
GRANT USAGE ON SEQUENCE ruvector_healing.issues_issue_id_seq TO ruvector_healer;

-- Tuning records its result: like the health check, for ruvector_healer.
GRANT SELECT ON ruvector_healing.search_settings TO PUBLIC;
REVOKE ALL ON FUNCTION ruvector_dag_tune_search(regclass, float8, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ruvector_dag_tune_search(regclass, float8, int, int) TO ruvector_healer;
GRANT INSERT ON ruvector_healing.search_settings TO ruvector_healer;
GRANT USAGE ON SEQUENCE ruvector_healing.search_settings_setting_id_seq TO ruvector_healer;
