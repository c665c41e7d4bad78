-- Health check: metrics become issues, recorded once and updated when found again.
CREATE TABLE c (id int PRIMARY KEY, embedding vector(3));
INSERT INTO c SELECT g, ARRAY[sin(g), cos(g), sin(g * 0.37)]::vector FROM generate_series(1, 300) g;
CREATE INDEX c_hnsw ON c USING hnsw (embedding vector_l2_ops);

-- A healthy index: no issue.
SELECT r->'issues' AS issues, r->'resolved_issues' AS resolved, r->'thresholds' AS thresholds,
       jsonb_array_length(r->'indexes') AS indexes
  FROM ruvector_dag_health_check('c') r;

-- Two thirds deleted and vacuumed: most element slots hold nothing (fragmentation 0.67 > 0.5).
DELETE FROM c WHERE id % 3 <> 0;
VACUUM c;
SELECT i->>'index' AS index, i->>'kind' AS kind, i->>'severity' AS severity, i->'priority' AS priority,
       i->'details'->'fragmentation' AS fragmentation, i->'details'->'threshold' AS threshold
  FROM jsonb_array_elements(ruvector_dag_health_check('c')->'issues') i;
-- Found again: the same issue, seen twice.
SELECT count(*) AS issues FROM jsonb_array_elements(ruvector_dag_health_check('c')->'issues');
SELECT index, kind, severity, priority, times_seen, status, details->'fragmentation' AS fragmentation
  FROM ruvector_dag_detected_issues('c');

-- An invalid index is an issue of its own.
CREATE INDEX c_ivf ON c USING ivfflat (embedding vector_l2_ops) WITH (lists = 2);
UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'c_ivf'::regclass;
SELECT i->>'index' AS index, i->>'kind' AS kind, i->>'severity' AS severity, i->'priority' AS priority
  FROM jsonb_array_elements(ruvector_dag_health_check('c')->'issues') i ORDER BY 2;
DROP INDEX c_ivf;

-- Rebuilt: the fragmentation issue is resolved, and stays in the history.
REINDEX INDEX c_hnsw;
SELECT r->'issues' AS issues, r->'resolved_issues' AS resolved FROM ruvector_dag_health_check('c') r;
SELECT index, kind, times_seen, status, resolved_at IS NOT NULL AS resolved_at_set
  FROM ruvector_dag_detected_issues('c') ORDER BY issue_id;
SELECT severity, n FROM jsonb_each(ruvector_dag_healing_status()->'open_issues_by_severity') AS s(severity, n);

-- A table without pgvector indexes.
CREATE TABLE plain (id int);
SELECT ruvector_dag_health_check('plain');
DROP TABLE c, plain;
