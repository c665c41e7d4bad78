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
    resolved_at  timestamptz,
    -- The index's schema and name, which survive a dump and restore (the
    -- OIDs above do not: see ruvector_healing.adopt_restored()).
    schema_name  text NOT NULL DEFAULT '',
    relname      text NOT NULL DEFAULT '',
    -- The root cause (churn, build_options, data_drift, search_setting,
    -- inherent, undetermined) and the whole diagnosis: evidence, impact,
    -- the repair that addresses the cause or the advice for a person.
    cause        text,
    diagnosis    jsonb
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
           (index_oid, index_name, table_oid, kind, severity, priority, details, schema_name, relname)
    SELECT idx::oid, idx::text, tbl, p_kind, p_severity, p_priority, p_details, n.nspname, c.relname
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = idx::oid
    ON CONFLICT (index_oid, kind) WHERE status = 'open'
    DO UPDATE SET severity = EXCLUDED.severity, priority = EXCLUDED.priority,
                  details = EXCLUDED.details, index_name = EXCLUDED.index_name,
                  schema_name = EXCLUDED.schema_name, relname = EXCLUDED.relname,
                  last_seen_at = now(), times_seen = i.times_seen + 1
    RETURNING issue_id
$$;

-- Marks the table's open issues not in `still_open` resolved; returns how
-- many. Anomalies (kinds 'anomaly_*', found by the background cycle
-- against a baseline) and low recall (measured by its probes) are
-- resolved only when `with_anomalies`: a manual health check does not
-- look for them.
CREATE FUNCTION ruvector_healing.resolve_issues(tbl oid, still_open bigint[], with_anomalies bool)
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    WITH r AS (
        UPDATE ruvector_healing.issues
           SET status = 'resolved', resolved_at = now()
         WHERE table_oid = tbl AND status = 'open' AND issue_id <> ALL (still_open)
           AND (with_anomalies OR (kind NOT LIKE 'anomaly\_%' AND kind <> 'low_recall'))
        RETURNING 1)
    SELECT count(*) FROM r
$$;

-- Issues of a table, open ones first, highest priority first, with their
-- diagnosis.
CREATE FUNCTION ruvector_dag_detected_issues(tbl regclass)
RETURNS TABLE (issue_id bigint, index text, kind text, severity text, priority int,
               details jsonb, detected_at timestamptz, last_seen_at timestamptz,
               times_seen int, status text, resolved_at timestamptz, cause text,
               repair text, needs_person bool, diagnosis jsonb)
LANGUAGE sql STABLE STRICT AS $$
    SELECT issue_id, index_name, kind, severity, priority, details, detected_at,
           last_seen_at, times_seen, status, resolved_at, cause,
           diagnosis->'remedy'->>'strategy', (diagnosis->>'needs_person')::bool, diagnosis
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
    measured_at     timestamptz NOT NULL DEFAULT now(),
    schema_name     text NOT NULL DEFAULT '', -- the index by name (survives a restore)
    relname         text NOT NULL DEFAULT '',
    table_oid       oid NOT NULL DEFAULT 0    -- whose readers may see the row
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

-- ---------------------------------------------------------------- repairs
-- The repair journal: one row per repair with its current state, written
-- before every step (planned -> building -> validating -> swapping ->
-- swapped -> [retiring] -> done; or failed / rolled_back / cancelled /
-- refused; dry_run rows only record a plan). Workers read only OIDs and
-- numbers from it; names and definitions come from the catalog.
CREATE TABLE ruvector_healing.repairs (
    repair_id     bigserial PRIMARY KEY,
    index_oid     oid NOT NULL,      -- the index as requested (after a rebuild: the backup)
    index_name    text NOT NULL,     -- as regclass printed it at request time
    schema_name   text NOT NULL,
    relname       text NOT NULL,     -- the index's name, which the rebuilt index keeps
    table_oid     oid NOT NULL,
    table_name    text NOT NULL,
    strategy      text NOT NULL CHECK (strategy IN ('rebuild', 'vacuum', 'tune_search')),
    issue_id      bigint,
    dry_run       bool NOT NULL DEFAULT false,
    status        text NOT NULL CHECK (status IN ('planned', 'building', 'validating', 'swapping',
                      'swapped', 'retiring', 'rolling_back', 'done', 'failed', 'rolled_back',
                      'cancelled', 'refused', 'dry_run', 'rollback_failed')),
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    requester_xid xid8,
    started_at    timestamptz,
    finished_at   timestamptz,
    worker_pid    int,
    plan          jsonb NOT NULL DEFAULT '{}',
    before        jsonb,
    after         jsonb,
    backup        jsonb,
    error         text
);
CREATE INDEX repairs_by_table ON ruvector_healing.repairs (table_oid, requested_at);
-- Whether a repair is unfinished (the Rust side's `plan::ACTIVE`).
CREATE FUNCTION ruvector_healing.repair_active(status text)
RETURNS bool LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT status IN ('planned', 'building', 'validating', 'swapping', 'swapped', 'retiring', 'rolling_back')
$$;
CREATE INDEX repairs_active ON ruvector_healing.repairs (status)
    WHERE ruvector_healing.repair_active(status);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.repairs', '');
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.repairs_repair_id_seq', '');

-- One row per step, committed before the step runs.
CREATE TABLE ruvector_healing.repair_steps (
    step_id   bigserial PRIMARY KEY,
    repair_id bigint NOT NULL REFERENCES ruvector_healing.repairs ON DELETE CASCADE,
    step      text NOT NULL,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    detail    jsonb
);
CREATE INDEX repair_steps_by_repair ON ruvector_healing.repair_steps (repair_id, step_id);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.repair_steps', '');
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.repair_steps_step_id_seq', '');

-- Choices for the background cycle and repairs, from the most general to
-- the most specific (as pg_index_watch allows): the whole database, a
-- schema, a table, an index. Kept by name, which survives a rebuild; the
-- most specific row that matches an index wins.
CREATE TABLE ruvector_healing.index_policies (
    scope       text NOT NULL CHECK (scope IN ('database', 'schema', 'table', 'index')),
    schema_name text NOT NULL DEFAULT '',  -- '' for the database
    object_name text NOT NULL DEFAULT '',  -- the table or index; '' above them
    excluded    bool NOT NULL DEFAULT false, -- the background cycle skips it
    strategy    text NOT NULL DEFAULT 'auto'  -- what automatic repairs may do
                CHECK (strategy IN ('auto', 'none', 'rebuild', 'vacuum', 'tune_search')),
    pin_lists   bool NOT NULL DEFAULT false, -- a rebuild keeps the IVFFlat lists as they are
    thresholds  jsonb NOT NULL DEFAULT '{}', -- overrides of the detection thresholds
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- How far the worker may change build options by itself (NULL: the
    -- setting ruvector.dag_healing_allow_option_changes).
    allow_option_changes text
                CHECK (allow_option_changes IN ('none', 'up_to_defaults', 'any')),
    PRIMARY KEY (scope, schema_name, object_name),
    -- The index's own hnsw.ef_search / ivfflat.probes, applied to queries
    -- that scan it while ruvector.dag_adaptive_search is on (index scope).
    search_value int CHECK (search_value BETWEEN 1 AND 32768)
);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.index_policies', '');

-- One row per index per healing cycle: the figures anomalies are judged
-- against (the index's own baseline).
CREATE TABLE ruvector_healing.observations (
    observation_id bigserial PRIMARY KEY,
    index_oid      oid NOT NULL,
    schema_name    text NOT NULL,
    index_name     text NOT NULL,
    table_oid      oid NOT NULL,
    observed_at    timestamptz NOT NULL DEFAULT now(),
    metrics        jsonb NOT NULL,  -- {metric: value} from the health report
    recall         float8,          -- recall@10 of the probe, when one ran
    probe_ms       float8           -- mean latency of the probe's index scans
);
CREATE INDEX observations_by_index ON ruvector_healing.observations (schema_name, index_name, observed_at);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.observations', '');
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.observations_observation_id_seq', '');

CREATE FUNCTION ruvector_healing.set_policy(
    p_scope text, sch text, nm text, p_excluded bool, p_strategy text, p_pin_lists bool, p_thresholds jsonb,
    p_allow_option_changes text)
RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k text; result jsonb;
BEGIN
    IF p_strategy IS NOT NULL AND p_strategy NOT IN ('auto', 'none', 'rebuild', 'vacuum', 'tune_search') THEN
        RAISE EXCEPTION 'unknown strategy "%"', p_strategy USING ERRCODE = 'invalid_parameter_value',
            HINT = 'auto, none (never repaired automatically), rebuild, vacuum or tune_search';
    END IF;
    IF p_thresholds IS NOT NULL THEN
        IF jsonb_typeof(p_thresholds) <> 'object' THEN
            RAISE EXCEPTION 'thresholds must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
                HINT = 'for example ''{"max_fragmentation": 0.3}''';
        END IF;
        FOR k IN SELECT jsonb_object_keys(p_thresholds) LOOP
            IF k NOT IN ('max_fragmentation', 'max_unreachable', 'max_unreachable_ratio',
                         'min_connectivity', 'max_cluster_balance', 'max_centroid_drift',
                         'max_dead_share', 'min_dead_tuples') THEN
                RAISE EXCEPTION 'unknown threshold "%"', k USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'thresholds: max_fragmentation, max_unreachable, max_unreachable_ratio, min_connectivity, max_cluster_balance, max_centroid_drift, max_dead_share, min_dead_tuples';
            END IF;
            IF jsonb_typeof(p_thresholds->k) <> 'number' OR (p_thresholds->>k)::float8 < 0 THEN
                RAISE EXCEPTION 'threshold "%" must be a non-negative number', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
    END IF;
    IF p_allow_option_changes IS NOT NULL AND p_allow_option_changes NOT IN ('none', 'up_to_defaults', 'any') THEN
        RAISE EXCEPTION 'unknown allow_option_changes "%"', p_allow_option_changes
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'none, up_to_defaults (m <= 16, ef_construction <= 64) or any';
    END IF;
    PERFORM ruvector_healing.require_maintain(p_scope, sch, nm);
    INSERT INTO ruvector_healing.index_policies AS p
           (scope, schema_name, object_name, excluded, strategy, pin_lists, thresholds, allow_option_changes)
    VALUES (p_scope, sch, nm, coalesce(p_excluded, false), coalesce(p_strategy, 'auto'),
            coalesce(p_pin_lists, false), coalesce(p_thresholds, '{}'), p_allow_option_changes)
    ON CONFLICT (scope, schema_name, object_name) DO UPDATE
       SET excluded = coalesce(p_excluded, p.excluded), strategy = coalesce(p_strategy, p.strategy),
           pin_lists = coalesce(p_pin_lists, p.pin_lists),
           thresholds = coalesce(p_thresholds, p.thresholds),
           allow_option_changes = coalesce(p_allow_option_changes, p.allow_option_changes),
           updated_at = now()
    RETURNING to_jsonb(p) INTO result;
    RETURN result;
END
$$;

-- An index's own search setting (validation and the write behind
-- ruvector_dag_set_search_setting, which also makes the calling session
-- see it at once). Kept in the index's policy, by name.
CREATE FUNCTION ruvector_healing.set_search_value(idx regclass, p_value int)
RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    sch text; nm text; am text; setting text; hi int; result jsonb;
BEGIN
    IF idx IS NULL THEN
        RAISE EXCEPTION 'index must not be NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'pass a pgvector index, for example ''items_embedding_idx''::regclass';
    END IF;
    SELECT n.nspname, c.relname, a.amname INTO sch, nm, am
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am a ON a.oid = c.relam
     WHERE c.oid = idx;
    IF am IS NULL OR am NOT IN ('hnsw', 'ivfflat') THEN
        RAISE EXCEPTION '"%" is not a pgvector hnsw or ivfflat index', idx
            USING ERRCODE = 'wrong_object_type', HINT = 'search settings apply to pgvector indexes';
    END IF;
    setting := CASE am WHEN 'hnsw' THEN 'hnsw.ef_search' ELSE 'ivfflat.probes' END;
    hi := CASE am WHEN 'hnsw' THEN 1000 ELSE 32768 END;
    IF p_value IS NOT NULL AND (p_value < 1 OR p_value > hi) THEN
        RAISE EXCEPTION '% must be between 1 and % (got %)', setting, hi, p_value
            USING ERRCODE = 'invalid_parameter_value', HINT = 'pgvector''s range for ' || setting || '; NULL removes the index''s own value';
    END IF;
    PERFORM ruvector_healing.require_maintain('index', sch, nm);
    INSERT INTO ruvector_healing.index_policies AS p (scope, schema_name, object_name, search_value)
    VALUES ('index', sch, nm, p_value)
    ON CONFLICT (scope, schema_name, object_name) DO UPDATE
       SET search_value = p_value, updated_at = now()
    RETURNING jsonb_build_object('index', idx::text, 'setting', setting, 'value', p.search_value,
                                 'adaptive_search', current_setting('ruvector.dag_adaptive_search', true)::bool)
      INTO result;
    RETURN result;
END
$$;

-- Sets (creating if needed) the policy of an index. NULL arguments keep
-- the current value.
CREATE FUNCTION ruvector_dag_set_index_policy(
    idx regclass, excluded bool DEFAULT NULL, strategy text DEFAULT NULL,
    pin_lists bool DEFAULT NULL, thresholds jsonb DEFAULT NULL, allow_option_changes text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    sch text; nm text; am text;
BEGIN
    IF idx IS NULL THEN
        RAISE EXCEPTION 'index must not be NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'pass a pgvector index; ruvector_dag_set_table_policy, _schema_policy and _database_policy set broader defaults';
    END IF;
    SELECT n.nspname, c.relname, a.amname INTO sch, nm, am
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am a ON a.oid = c.relam
     WHERE c.oid = idx;
    IF am IS NULL OR am NOT IN ('hnsw', 'ivfflat') THEN
        RAISE EXCEPTION '"%" is not a pgvector hnsw or ivfflat index', idx
            USING ERRCODE = 'wrong_object_type', HINT = 'policies apply to pgvector indexes';
    END IF;
    RETURN ruvector_healing.set_policy('index', sch, nm, excluded, strategy, pin_lists, thresholds, allow_option_changes);
END
$$;

-- The same for every pgvector index of a table.
CREATE FUNCTION ruvector_dag_set_table_policy(
    tbl regclass, excluded bool DEFAULT NULL, strategy text DEFAULT NULL,
    pin_lists bool DEFAULT NULL, thresholds jsonb DEFAULT NULL, allow_option_changes text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    sch text; nm text; kind "char";
BEGIN
    SELECT n.nspname, c.relname, c.relkind INTO sch, nm, kind
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF tbl IS NULL OR kind IS NULL OR kind NOT IN ('r', 'p', 'm') THEN
        RAISE EXCEPTION '"%" is not a table', coalesce(tbl::text, 'NULL')
            USING ERRCODE = 'wrong_object_type', HINT = 'pass the table that holds the vectors';
    END IF;
    RETURN ruvector_healing.set_policy('table', sch, nm, excluded, strategy, pin_lists, thresholds, allow_option_changes);
END
$$;

-- The same for every pgvector index of a schema.
CREATE FUNCTION ruvector_dag_set_schema_policy(
    schema_name name, excluded bool DEFAULT NULL, strategy text DEFAULT NULL,
    pin_lists bool DEFAULT NULL, thresholds jsonb DEFAULT NULL, allow_option_changes text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF schema_name IS NULL OR NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = schema_name) THEN
        RAISE EXCEPTION 'schema "%" does not exist', coalesce(schema_name::text, 'NULL')
            USING ERRCODE = 'invalid_schema_name', HINT = 'pass an existing schema''s name';
    END IF;
    RETURN ruvector_healing.set_policy('schema', schema_name, '', excluded, strategy, pin_lists, thresholds, allow_option_changes);
END
$$;

-- The same for every pgvector index of the database.
CREATE FUNCTION ruvector_dag_set_database_policy(
    excluded bool DEFAULT NULL, strategy text DEFAULT NULL,
    pin_lists bool DEFAULT NULL, thresholds jsonb DEFAULT NULL, allow_option_changes text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql VOLATILE AS $$
    SELECT ruvector_healing.set_policy('database', '', '', excluded, strategy, pin_lists, thresholds, allow_option_changes)
$$;

-- Removes a policy: scope 'index' or 'table' with schema and name,
-- 'schema' with the schema, 'database' alone.
CREATE FUNCTION ruvector_dag_reset_policy(scope text, schema_name text DEFAULT '', object_name text DEFAULT '')
RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n bigint;
BEGIN
    IF scope IS NULL OR scope NOT IN ('database', 'schema', 'table', 'index') THEN
        RAISE EXCEPTION 'unknown policy scope "%"', coalesce(scope, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'database, schema, table or index';
    END IF;
    PERFORM ruvector_healing.require_maintain($1, coalesce($2, ''), coalesce($3, ''));
    DELETE FROM ruvector_healing.index_policies p
     WHERE p.scope = $1 AND p.schema_name = coalesce($2, '') AND p.object_name = coalesce($3, '');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$$;

-- One repair as history shows it.
CREATE FUNCTION ruvector_healing.repair_row(r ruvector_healing.repairs)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'repair_id', r.repair_id, 'index', r.index_name, 'table', r.table_name,
        'strategy', r.strategy, 'issue_id', r.issue_id, 'status', r.status,
        'dry_run', r.dry_run, 'requested_by', r.requested_by, 'requested_at', r.requested_at,
        'started_at', r.started_at, 'finished_at', r.finished_at,
        'duration_ms', round((extract(epoch FROM r.finished_at - r.started_at) * 1000)::numeric, 1),
        'plan', r.plan - 'settings', 'settings', r.plan->'settings',
        'before', r.before, 'after', r.after, 'backup', r.backup, 'error', r.error)
$$;

-- Repairs of a table (every table when NULL) over the last `days` days,
-- newest first.
CREATE FUNCTION ruvector_dag_repair_history(tbl regclass, days int DEFAULT 7)
RETURNS TABLE (repair_id bigint, index text, strategy text, issue_id bigint, status text,
               started_at timestamptz, finished_at timestamptz, duration_ms float8,
               before jsonb, after jsonb, backup jsonb, error text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF days IS NULL OR days < 1 THEN
        RAISE EXCEPTION 'days must be at least 1, got %', coalesce(days::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'for example ruvector_dag_repair_history(''items'', 30)';
    END IF;
    RETURN QUERY
    SELECT r.repair_id, r.index_name, r.strategy, r.issue_id, r.status, r.started_at,
           r.finished_at, (extract(epoch FROM r.finished_at - r.started_at) * 1000)::float8,
           r.before, r.after, r.backup, r.error
      FROM ruvector_healing.repairs r
     WHERE (tbl IS NULL OR r.table_oid = tbl::oid)
       AND r.requested_at > now() - make_interval(days => days)
     ORDER BY r.repair_id DESC;
END
$$;

-- Waits for a repair to finish, committing between short polls: a
-- concurrent index build waits for every transaction older than its own
-- snapshot, so waiting inside one statement or transaction would block
-- the very repair it waits for.
CREATE PROCEDURE ruvector_dag_wait_repair(repair_id bigint, timeout_s int DEFAULT 3600,
                                          INOUT result jsonb DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    id bigint := repair_id;
    deadline timestamptz;
    st text;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'repair_id must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout_s IS NULL OR timeout_s < 0 THEN
        RAISE EXCEPTION 'timeout_s must be 0 or more seconds, got %', coalesce(timeout_s::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF @extschema@.ruvector_dag_in_transaction_block() THEN
        RAISE EXCEPTION 'ruvector_dag_wait_repair cannot run inside a transaction block'
            USING ERRCODE = 'active_sql_transaction',
                  DETAIL = 'A repair builds its index with CREATE INDEX CONCURRENTLY, which waits for every transaction older than its own snapshot: waiting inside an open transaction would block the repair it waits for.',
                  HINT = 'CALL it on its own, outside BEGIN ... COMMIT.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ruvector_healing.repairs r WHERE r.repair_id = id) THEN
        RAISE EXCEPTION 'repair % does not exist', id
            USING ERRCODE = 'no_data_found', HINT = 'list repairs with ruvector_dag_repair_history(table)';
    END IF;
    deadline := clock_timestamp() + make_interval(secs => timeout_s);
    LOOP
        SELECT r.status INTO st FROM ruvector_healing.repairs r WHERE r.repair_id = id;
        EXIT WHEN st IN ('done', 'failed', 'rolled_back', 'cancelled', 'refused', 'dry_run', 'rollback_failed');
        IF clock_timestamp() >= deadline THEN
            RAISE WARNING 'repair % is still %, after % s', id, st, timeout_s;
            EXIT;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.1);
    END LOOP;
    SELECT ruvector_healing.repair_row(r) INTO result FROM ruvector_healing.repairs r WHERE r.repair_id = id;
END
$$;

-- ---------------------------------------------------------------- restores
-- The cluster and database the rows above were written in. pg_dump keeps
-- this row with the rest, so after a restore into another database (or a
-- copy made with CREATE DATABASE ... TEMPLATE, or pg_upgrade) the table
-- holds a row that is not this database's: the OIDs kept in the history
-- then name nothing, or something else, and adopt_restored() resolves
-- them again by the schema and name each row keeps.
CREATE TABLE ruvector_healing.origin (
    system_identifier text NOT NULL,
    database_oid      oid NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.origin', '');
INSERT INTO ruvector_healing.origin (system_identifier, database_oid)
SELECT s.system_identifier::text, d.oid
  FROM pg_catalog.pg_control_system() s, pg_catalog.pg_database d
 WHERE d.datname = pg_catalog.current_database();

-- The schema and name in the text regclass printed: "s.i", or "i" when
-- the schema was on the printing session's search path (taken as public).
CREATE FUNCTION ruvector_healing.split_name(printed text, OUT schema_name text, OUT relname text)
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN cardinality(p) > 1 THEN p[1] ELSE 'public' END, p[cardinality(p)]
      FROM pg_catalog.parse_ident(printed) p
$$;

-- An index by schema and name: (index, table), NULLs when there is none.
CREATE FUNCTION ruvector_healing.index_by_name(sch text, nm text, OUT index_oid oid, OUT table_oid oid)
LANGUAGE sql STABLE AS $$
    SELECT x.indexrelid, x.indrelid
      FROM pg_catalog.pg_index x
      JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = sch AND c.relname = nm
$$;

-- After a restore (see ruvector_healing.origin), or rows restored from a
-- dump of an older release (no names kept): every OID is resolved again by
-- name, 0 when nothing has that name any more (only superusers and
-- pg_read_all_stats see such rows). Kept backups and indexes waiting to be
-- dropped were not restored: pg_dump does not dump invalid indexes.
-- Returns the rows resolved again; 0 when there was nothing to do. The
-- background cycle and every repair worker call it first.
CREATE FUNCTION ruvector_healing.adopt_restored()
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    sysid text := (SELECT s.system_identifier::text FROM pg_catalog.pg_control_system() s);
    dboid oid := (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database());
    total bigint := 0;
    n bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ruvector_healing.origin o
                    WHERE o.system_identifier <> sysid OR o.database_oid <> dboid)
       AND NOT EXISTS (SELECT 1 FROM ruvector_healing.issues WHERE schema_name = '')
       AND NOT EXISTS (SELECT 1 FROM ruvector_healing.search_settings WHERE schema_name = '') THEN
        RETURN 0;
    END IF;
    -- Rows of an older release's dump: the name is all that is left.
    UPDATE ruvector_healing.issues
       SET (schema_name, relname) = (SELECT s.schema_name, s.relname FROM ruvector_healing.split_name(index_name) s)
     WHERE schema_name = '';
    UPDATE ruvector_healing.search_settings
       SET (schema_name, relname) = (SELECT s.schema_name, s.relname FROM ruvector_healing.split_name(index_name) s)
     WHERE schema_name = '';
    UPDATE ruvector_healing.issues
       SET (index_oid, table_oid) = (SELECT coalesce(r.index_oid, 0), coalesce(r.table_oid, 0)
                                       FROM ruvector_healing.index_by_name(schema_name, relname) r);
    GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    UPDATE ruvector_healing.observations
       SET (index_oid, table_oid) = (SELECT coalesce(r.index_oid, 0), coalesce(r.table_oid, 0)
                                       FROM ruvector_healing.index_by_name(schema_name, index_name) r);
    GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    UPDATE ruvector_healing.search_settings
       SET (index_oid, table_oid) = (SELECT coalesce(r.index_oid, 0), coalesce(r.table_oid, 0)
                                       FROM ruvector_healing.index_by_name(schema_name, relname) r);
    GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    UPDATE ruvector_healing.repairs
       SET index_oid = coalesce((SELECT r.index_oid FROM ruvector_healing.index_by_name(schema_name, relname) r), 0),
           table_oid = coalesce(pg_catalog.to_regclass(table_name)::oid, 0),
           plan = CASE WHEN plan ? 'shadow_oid'
                       THEN jsonb_set(plan, '{shadow_oid}', to_jsonb(coalesce(
                                (SELECT r.index_oid FROM ruvector_healing.index_by_name(schema_name, plan->>'shadow_name') r), 0)::int8))
                       ELSE plan END,
           backup = CASE WHEN coalesce((backup->>'kept')::bool, false) OR backup ? 'drop_pending'
                         THEN (backup - 'drop_pending') || jsonb_build_object('kept', false,
                                  'not_restored', 'pg_dump does not dump invalid indexes: the index kept for rollback was not restored')
                         ELSE backup END;
    GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    UPDATE ruvector_healing.index_stats
       SET (index_oid, table_oid) = (SELECT coalesce(r.index_oid, 0), coalesce(r.table_oid, 0)
                                       FROM ruvector_healing.index_by_name(schema_name, relname) r);
    GET DIAGNOSTICS n = ROW_COUNT; total := total + n;
    -- Write counts start again: the restored tables' statistics began
    -- with the restore (the next cycle counts from its first look).
    DELETE FROM ruvector_healing.index_writes;
    DELETE FROM ruvector_healing.origin;
    INSERT INTO ruvector_healing.origin (system_identifier, database_oid) VALUES (sysid, dboid);
    RETURN total;
END
$$;

-- ---------------------------------------------------------------- visibility
-- A row about a table is visible to a role that may read that table
-- (SELECT on it or on any of its columns, as inspecting its index
-- requires), to pg_read_all_stats (as PostgreSQL's own statistics views
-- show other users' rows), and to superusers (who bypass row security).
-- A table that no longer exists is visible only to those two. Row-level
-- security rather than views over revoked tables: the tables stay the
-- interface users query, every function that is not SECURITY DEFINER is
-- filtered by the same rule without code of its own, and pg_dump by the
-- owner keeps every row (a non-owner's pg_dump stops with "query would be
-- affected by row-level security policy" unless it passes
-- --enable-row-security, which dumps the rows that role may see).
CREATE FUNCTION ruvector_healing.visible(tbl oid)
RETURNS bool LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(pg_catalog.has_any_column_privilege(tbl, 'SELECT'), false)
        OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
$$;

-- The table a policy row is about: the index's table, the table itself;
-- 0 for schema and database scope (or when it no longer exists).
CREATE FUNCTION ruvector_healing.policy_table(p_scope text, sch text, nm text)
RETURNS oid LANGUAGE sql STABLE AS $$
    SELECT coalesce(CASE p_scope
               WHEN 'index' THEN (SELECT r.table_oid FROM ruvector_healing.index_by_name(sch, nm) r)
               WHEN 'table' THEN pg_catalog.to_regclass(pg_catalog.format('%I.%I', sch, nm))::oid
           END, 0)
$$;

-- Policies of an index or a table follow the table's rule; broader ones
-- are for ruvector_healer members (and pg_read_all_stats).
CREATE FUNCTION ruvector_healing.policy_visible(p_scope text, sch text, nm text)
RETURNS bool LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_scope IN ('index', 'table')
                THEN ruvector_healing.visible(ruvector_healing.policy_table(p_scope, sch, nm))
                ELSE pg_catalog.pg_has_role('ruvector_healer', 'USAGE')
                     OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE') END
$$;

-- A policy steers the repairs of a table: setting or removing one of an
-- index or a table takes the right to maintain it (MAINTAIN, or owning
-- it), as a repair request does.
CREATE FUNCTION ruvector_healing.require_maintain(p_scope text, sch text, nm text)
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    tbl oid := ruvector_healing.policy_table(p_scope, sch, nm);
BEGIN
    IF p_scope IN ('index', 'table') AND tbl <> 0
       AND NOT pg_catalog.has_table_privilege(tbl, 'MAINTAIN') THEN
        RAISE EXCEPTION 'permission denied to set the policy of %', tbl::regclass
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('policies of a table''s indexes need the right to maintain it: GRANT MAINTAIN ON %s TO %I',
                                           tbl::regclass, current_user);
    END IF;
END
$$;

ALTER TABLE ruvector_healing.issues ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ruvector_healing.issues FOR SELECT
    USING (ruvector_healing.visible(table_oid));
CREATE POLICY healer_writes ON ruvector_healing.issues TO ruvector_healer
    USING (ruvector_healing.visible(table_oid)) WITH CHECK (ruvector_healing.visible(table_oid));

ALTER TABLE ruvector_healing.search_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ruvector_healing.search_settings FOR SELECT
    USING (ruvector_healing.visible(table_oid));
CREATE POLICY healer_writes ON ruvector_healing.search_settings TO ruvector_healer
    USING (ruvector_healing.visible(table_oid)) WITH CHECK (ruvector_healing.visible(table_oid));

ALTER TABLE ruvector_healing.repairs ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ruvector_healing.repairs FOR SELECT
    USING (ruvector_healing.visible(table_oid));

ALTER TABLE ruvector_healing.repair_steps ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ruvector_healing.repair_steps FOR SELECT
    USING (EXISTS (SELECT 1 FROM ruvector_healing.repairs r WHERE r.repair_id = repair_steps.repair_id));

ALTER TABLE ruvector_healing.observations ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ruvector_healing.observations FOR SELECT
    USING (ruvector_healing.visible(table_oid));

ALTER TABLE ruvector_healing.index_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ruvector_healing.index_policies FOR SELECT
    USING (ruvector_healing.policy_visible(scope, schema_name, object_name));
CREATE POLICY healer_writes ON ruvector_healing.index_policies TO ruvector_healer
    USING (ruvector_healing.policy_visible(scope, schema_name, object_name))
    WITH CHECK (ruvector_healing.policy_visible(scope, schema_name, object_name));

-- ---------------------------------------------------------------- statistics
-- The table's write counters (pg_stat_all_tables) when an index's count
-- starts: at its build by a repair ('build'); when the extension first saw
-- it ('first_seen': the build predates the extension, or another tool
-- rebuilt it); after PostgreSQL's statistics were reset ('stats_reset').
-- Kept by name; the view counts from here only while the OID matches.
CREATE TABLE ruvector_healing.index_writes (
    schema_name text NOT NULL,
    relname     text NOT NULL,
    index_oid   oid NOT NULL,
    since       text NOT NULL CHECK (since IN ('build', 'first_seen', 'stats_reset')),
    counted_at  timestamptz NOT NULL DEFAULT now(),
    n_tup_ins   bigint NOT NULL,
    n_tup_upd   bigint NOT NULL,
    n_tup_del   bigint NOT NULL,
    table_oid   oid NOT NULL,        -- whose readers may see the row
    PRIMARY KEY (schema_name, relname)
);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.index_writes', '');
ALTER TABLE ruvector_healing.index_writes ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ruvector_healing.index_writes FOR SELECT
    USING (ruvector_healing.visible(table_oid));

-- Starts (or restarts) the write count of an index.
CREATE FUNCTION ruvector_healing.count_writes_from(idx oid, p_since text)
RETURNS void LANGUAGE sql VOLATILE AS $$
    INSERT INTO ruvector_healing.index_writes AS w
           (schema_name, relname, index_oid, since, n_tup_ins, n_tup_upd, n_tup_del, table_oid)
    SELECT n.nspname, c.relname, c.oid, p_since,
           pg_catalog.pg_stat_get_tuples_inserted(x.indrelid), pg_catalog.pg_stat_get_tuples_updated(x.indrelid),
           pg_catalog.pg_stat_get_tuples_deleted(x.indrelid), x.indrelid
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
     WHERE c.oid = idx
    ON CONFLICT (schema_name, relname) DO UPDATE
       SET index_oid = EXCLUDED.index_oid, since = EXCLUDED.since, counted_at = now(),
           n_tup_ins = EXCLUDED.n_tup_ins, n_tup_upd = EXCLUDED.n_tup_upd,
           n_tup_del = EXCLUDED.n_tup_del, table_oid = EXCLUDED.table_oid
$$;

-- The cycle's part: starts the count of an index seen for the first time
-- (or under a new OID), restarts it when the table's counters went back.
CREATE FUNCTION ruvector_healing.keep_write_count(idx oid)
RETURNS void LANGUAGE sql VOLATILE AS $$
    SELECT ruvector_healing.count_writes_from(idx,
               CASE WHEN w.index_oid IS DISTINCT FROM idx THEN 'first_seen' ELSE 'stats_reset' END)
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
      LEFT JOIN ruvector_healing.index_writes w
             ON w.schema_name = n.nspname::text COLLATE "default" AND w.relname = c.relname::text COLLATE "default"
     WHERE c.oid = idx
       AND (w.index_oid IS DISTINCT FROM idx
            OR pg_catalog.pg_stat_get_tuples_inserted(x.indrelid) < w.n_tup_ins
            OR pg_catalog.pg_stat_get_tuples_updated(x.indrelid) < w.n_tup_upd
            OR pg_catalog.pg_stat_get_tuples_deleted(x.indrelid) < w.n_tup_del)
$$;

CREATE INDEX repairs_by_index ON ruvector_healing.repairs (schema_name, relname, repair_id);

-- The last figures of each index (by name, as its observations), kept by
-- the cycle with every observation so that the statistics view reads one
-- row per index instead of searching the history.
CREATE TABLE ruvector_healing.index_stats (
    schema_name          text NOT NULL,
    relname              text NOT NULL,
    index_oid            oid NOT NULL,
    table_oid            oid NOT NULL,  -- whose readers may see the row
    inspected_at         timestamptz NOT NULL,
    unreachable_ratio    float8,
    fragmentation        float8,
    connectivity_score   float8,
    cluster_balance      float8,
    centroid_drift       float8,
    list_size_p50        float8,
    list_size_p90        float8,
    list_size_p99        float8,
    list_size_max        float8,
    -- The last recall measurement (kept while later cycles do not probe).
    recall               float8,
    recall_ci_low        float8,
    recall_ci_high       float8,
    recall_setting       text,
    recall_setting_value int,
    recall_at            timestamptz,
    -- The last verification (ruvector.dag_healing_verify_interval_s).
    verified_at          timestamptz,
    verify_violations    bigint,
    PRIMARY KEY (schema_name, relname)
);
SELECT pg_catalog.pg_extension_config_dump('ruvector_healing.index_stats', '');
ALTER TABLE ruvector_healing.index_stats ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON ruvector_healing.index_stats FOR SELECT
    USING (ruvector_healing.visible(table_oid));

-- Records one observation of an index and keeps its last figures.
CREATE FUNCTION ruvector_healing.observe(idx oid, sch text, nm text, tbl oid, m jsonb, rec float8, ms float8)
RETURNS void LANGUAGE sql VOLATILE AS $$
    INSERT INTO ruvector_healing.observations
           (index_oid, schema_name, index_name, table_oid, metrics, recall, probe_ms)
    VALUES (idx, sch, nm, tbl, m, rec, ms);
    INSERT INTO ruvector_healing.index_stats AS s
    SELECT sch, nm, idx, tbl, now(),
           (m->>'unreachable_ratio')::float8, (m->>'fragmentation')::float8,
           (m->>'connectivity_score')::float8, (m->>'cluster_balance')::float8,
           (m->>'centroid_drift')::float8, (m->>'list_size_p50')::float8,
           (m->>'list_size_p90')::float8, (m->>'list_size_p99')::float8, (m->>'list_size_max')::float8,
           rec, (m->'recall_ci95'->>0)::float8, (m->'recall_ci95'->>1)::float8,
           m->'recall_setting'->>'name', (m->'recall_setting'->>'value')::int,
           CASE WHEN rec IS NOT NULL THEN now() END
    ON CONFLICT (schema_name, relname) DO UPDATE SET
           index_oid = EXCLUDED.index_oid, table_oid = EXCLUDED.table_oid,
           inspected_at = EXCLUDED.inspected_at, unreachable_ratio = EXCLUDED.unreachable_ratio,
           fragmentation = EXCLUDED.fragmentation, connectivity_score = EXCLUDED.connectivity_score,
           cluster_balance = EXCLUDED.cluster_balance, centroid_drift = EXCLUDED.centroid_drift,
           list_size_p50 = EXCLUDED.list_size_p50, list_size_p90 = EXCLUDED.list_size_p90,
           list_size_p99 = EXCLUDED.list_size_p99, list_size_max = EXCLUDED.list_size_max,
           -- A cycle without a probe keeps the last measurement.
           recall = CASE WHEN EXCLUDED.recall IS NULL THEN s.recall ELSE EXCLUDED.recall END,
           recall_ci_low = CASE WHEN EXCLUDED.recall IS NULL THEN s.recall_ci_low ELSE EXCLUDED.recall_ci_low END,
           recall_ci_high = CASE WHEN EXCLUDED.recall IS NULL THEN s.recall_ci_high ELSE EXCLUDED.recall_ci_high END,
           recall_setting = CASE WHEN EXCLUDED.recall IS NULL THEN s.recall_setting ELSE EXCLUDED.recall_setting END,
           recall_setting_value = CASE WHEN EXCLUDED.recall IS NULL THEN s.recall_setting_value ELSE EXCLUDED.recall_setting_value END,
           recall_at = CASE WHEN EXCLUDED.recall IS NULL THEN s.recall_at ELSE EXCLUDED.recall_at END
$$;
