-- Installing: the extension needs pgvector and lands in one schema of its own.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION ruvector_healing;
SELECT extname, extversion FROM pg_extension WHERE extname IN ('vector', 'ruvector_healing') ORDER BY 1;

-- The SQL surface: every function, its arguments and result.
SELECT p.oid::regprocedure AS function, pg_get_function_result(p.oid) AS returns
  FROM pg_proc p
 WHERE p.proname LIKE 'ruvector\_dag\_%'
 ORDER BY 1::text;

-- The state schema.
SELECT c.relname, c.relkind FROM pg_class c
 WHERE c.relnamespace = 'ruvector_healing'::regnamespace ORDER BY 1;
-- pg_dump keeps the issue history.
SELECT unnest(extconfig)::regclass FROM pg_extension WHERE extname = 'ruvector_healing' ORDER BY 1;
