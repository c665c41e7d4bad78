-- Bad input: a clear error with a hint, never a crash.
\set VERBOSITY default
CREATE TABLE e (id int PRIMARY KEY, embedding vector(3), tags int[]);
INSERT INTO e SELECT g, ARRAY[g, g % 7, g % 5]::vector, ARRAY[g] FROM generate_series(1, 50) g;
CREATE INDEX e_hnsw ON e USING hnsw (embedding vector_l2_ops);
CREATE INDEX e_ivf ON e USING ivfflat (embedding vector_l2_ops) WITH (lists = 2);
CREATE INDEX e_gin ON e USING gin (tags);

SELECT ruvector_dag_index_health(NULL);
SELECT ruvector_dag_index_health('e');              -- a table
SELECT ruvector_dag_index_health('e_pkey');         -- a B-tree index
SELECT ruvector_dag_index_health('e_gin');          -- a GIN index
SELECT ruvector_dag_index_health(4000000000::oid::regclass);  -- no such relation (dropped)
SELECT ruvector_dag_index_health('no_such_index');  -- regclass input itself fails

-- An index whose concurrent build failed (indisvalid = false).
UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'e_hnsw'::regclass;
SELECT ruvector_dag_index_health('e_hnsw');
UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'e_hnsw'::regclass;

-- The detail functions check the access method.
SELECT * FROM ruvector_dag_hnsw_levels('e_ivf');
SELECT * FROM ruvector_dag_ivfflat_lists('e_hnsw');
SELECT * FROM ruvector_dag_hnsw_unreachable('e_ivf');
SELECT * FROM ruvector_dag_hnsw_unreachable('e_hnsw', 0);
SELECT * FROM ruvector_dag_hnsw_levels(NULL);

-- health_check wants a table.
SELECT ruvector_dag_health_check(NULL);
SELECT ruvector_dag_health_check('e_hnsw');
SELECT ruvector_dag_health_check(4000000000::oid::regclass);
SELECT * FROM ruvector_dag_detected_issues(NULL);

-- Partitioned tables: every partition's index is inspected.
CREATE TABLE p (id int, embedding vector(3)) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (200);
INSERT INTO p SELECT g, ARRAY[g, g % 7, g % 5]::vector FROM generate_series(0, 199) g;
CREATE INDEX p_hnsw ON p USING hnsw (embedding vector_l2_ops);
SELECT r->'partitioned' AS partitioned, jsonb_array_length(r->'partitions') AS partitions,
       (SELECT sum((x->>'heap_tids')::int) FROM jsonb_array_elements(r->'partitions') x) AS heap_tids
  FROM ruvector_dag_index_health('p_hnsw') r;
SELECT * FROM ruvector_dag_hnsw_levels('p_hnsw');
SELECT jsonb_array_length(ruvector_dag_health_check('p')->'indexes') AS indexes;

-- A session's own temporary index can be inspected.
CREATE TEMP TABLE tmp (embedding vector(3));
INSERT INTO tmp SELECT ARRAY[g, 1, 2]::vector FROM generate_series(1, 20) g;
CREATE INDEX tmp_hnsw ON tmp USING hnsw (embedding vector_l2_ops);
SELECT (ruvector_dag_index_health('tmp_hnsw')->>'heap_tids')::int AS heap_tids;

DROP TABLE e, p, tmp;
