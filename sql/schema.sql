-- ruvector_healing: tables and helpers (runs before the generated functions).

-- ---------------------------------------------------------------- schema
CREATE SCHEMA IF NOT EXISTS ruvector_healing;
COMMENT ON SCHEMA ruvector_healing IS 'ruvector_healing internal state: issues, history';

-- Members may ask for checks and (later) repairs; superusers always may.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ruvector_healer') THEN
        CREATE ROLE ruvector_healer NOLOGIN;
    END IF;
END
$$;

-- ---------------------------------------------------------------- issues
-- One row per problem found in an index. The same problem found again
-- updates its open row (times_seen, last_seen_at, details); a problem no
-- longer found is marked resolved.
CREATE TABLE ruvector_healing.issues (
    issue_id     bigserial PRIMARY KEY,
    index_oid    oid NOT NULL,
    index_name   text NOT NULL,
    table_oid    oid NOT NULL,
    kind         text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    priority     int NOT NULL CHECK (priority BETWEEN 0 AND 100),
    details      jsonb NOT NULL,
    detected_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    times_seen   int NOT NULL DEFAULT 1,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolved_at  timestamptz
);
CREATE UNIQUE INDEX issues_one_open_per_kind
    ON ruvector_healing.issues (index_oid, kind) WHERE status = 'open';
CREATE INDEX issues_by_table ON ruvector_healing.issues (table_oid, detected_at);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.issues', '');
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.issues_issue_id_seq', '');

-- Insert or refresh the open issue of (index, kind); returns its id.
CREATE FUNCTION ruvector_healing.record_issue(
    idx regclass, tbl oid, p_kind text, p_severity text, p_priority int, p_details jsonb)
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    INSERT INTO ruvector_healing.issues AS i
           (index_oid, index_name, table_oid, kind, severity, priority, details)
    VALUES (idx::oid, idx::text, tbl, p_kind, p_severity, p_priority, p_details)
    ON CONFLICT (index_oid, kind) WHERE status = 'open'
    DO UPDATE SET severity = EXCLUDED.severity, priority = EXCLUDED.priority,
                  details = EXCLUDED.details, index_name = EXCLUDED.index_name,
                  last_seen_at = now(), times_seen = i.times_seen + 1
    RETURNING issue_id
$$;

-- Marks the table's open issues not in `still_open` resolved; returns how many.
CREATE FUNCTION ruvector_healing.resolve_issues(tbl oid, still_open bigint[])
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    WITH r AS (
        UPDATE ruvector_healing.issues
           SET status = 'resolved', resolved_at = now()
         WHERE table_oid = tbl AND status = 'open' AND issue_id <> ALL (still_open)
        RETURNING 1)
    SELECT count(*) FROM r
$$;

-- Issues of a table, open ones first, highest priority first.
CREATE FUNCTION ruvector_dag_detected_issues(tbl regclass)
RETURNS TABLE (issue_id bigint, index text, kind text, severity text, priority int,
               details jsonb, detected_at timestamptz, last_seen_at timestamptz,
               times_seen int, status text, resolved_at timestamptz)
LANGUAGE sql STABLE STRICT AS $$
    SELECT issue_id, index_name, kind, severity, priority, details, detected_at,
           last_seen_at, times_seen, status, resolved_at
      FROM ruvector_healing.issues
     WHERE table_oid = tbl::oid
     ORDER BY status = 'open' DESC, priority DESC, issue_id
$$;

-- ---------------------------------------------------------------- search settings
-- One row per tuning run of ruvector_dag_tune_search(): the smallest
-- hnsw.ef_search / ivfflat.probes that reached the target on the sample.
-- Nothing here is applied to anyone's settings.
CREATE TABLE ruvector_healing.search_settings (
    setting_id      bigserial PRIMARY KEY,
    index_oid       oid NOT NULL,
    index_name      text NOT NULL,
    setting         text NOT NULL,
    value           int,            -- NULL: no value in range reached the target
    target_recall   float8 NOT NULL,
    measured_recall float8 NOT NULL, -- at `value`, else the best measured
    reachable       bool NOT NULL,
    k               int NOT NULL,
    sample_size     int NOT NULL,
    curve           jsonb NOT NULL, -- [{value, recall, mean_query_ms}]
    measured_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX search_settings_by_index ON ruvector_healing.search_settings (index_oid, measured_at);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.search_settings', '');
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.search_settings_setting_id_seq', '');

-- Tuning results, newest first; for one index when given.
CREATE FUNCTION ruvector_dag_search_settings(idx regclass DEFAULT NULL)
RETURNS TABLE (setting_id bigint, index text, setting text, value int, target_recall float8,
               measured_recall float8, reachable bool, k int, sample_size int, curve jsonb,
               measured_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT setting_id, index_name, setting, value, target_recall, measured_recall, reachable,
           k, sample_size, curve, measured_at
      FROM ruvector_healing.search_settings
     WHERE idx IS NULL OR index_oid = idx::oid
     ORDER BY measured_at DESC, setting_id DESC
$$;
