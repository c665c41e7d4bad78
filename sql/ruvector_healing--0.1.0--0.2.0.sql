-- ruvector_healing 0.1.0 -> 0.2.0.
-- Every statement here brings a 0.1.0 database to what a fresh 0.2.0
-- install creates; tests/integration/upgrade.rs compares the two object by
-- object. Rows are kept: columns are added with defaults and filled from
-- the catalog, nothing is dropped.

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
       SET index_oid = coalesce((SELECT r.index_oid FROM ruvector_healing.index_by_name(schema_name, relname) r), 0);
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
    DELETE FROM ruvector_healing.origin;
    INSERT INTO ruvector_healing.origin (system_identifier, database_oid) VALUES (sysid, dboid);
    RETURN total;
END
$$;

-- ---------------------------------------------------------------- names beside OIDs
-- Issues and tuning results keep the index's schema and name, which
-- survive a dump and restore (OIDs do not).
ALTER TABLE ruvector_healing.issues
    ADD COLUMN schema_name text NOT NULL DEFAULT '',
    ADD COLUMN relname text NOT NULL DEFAULT '';
ALTER TABLE ruvector_healing.search_settings
    ADD COLUMN schema_name text NOT NULL DEFAULT '',
    ADD COLUMN relname text NOT NULL DEFAULT '';
UPDATE ruvector_healing.issues i SET schema_name = n.nspname, relname = c.relname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = i.index_oid;
UPDATE ruvector_healing.search_settings i SET schema_name = n.nspname, relname = c.relname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = i.index_oid;
-- Indexes dropped since: the name as it was printed.
UPDATE ruvector_healing.issues
   SET (schema_name, relname) = (SELECT s.schema_name, s.relname FROM ruvector_healing.split_name(index_name) s)
 WHERE schema_name = '';
UPDATE ruvector_healing.search_settings
   SET (schema_name, relname) = (SELECT s.schema_name, s.relname FROM ruvector_healing.split_name(index_name) s)
 WHERE schema_name = '';

CREATE OR REPLACE FUNCTION ruvector_healing.record_issue(
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


-- ---------------------------------------------------------------- grants
REVOKE ALL ON FUNCTION ruvector_healing.adopt_restored() FROM PUBLIC;
