-- Reading index contents needs the privilege that reading the table would.
CREATE TABLE secret (id int PRIMARY KEY, embedding vector(3));
INSERT INTO secret SELECT g, ARRAY[g, g % 7, g % 5]::vector FROM generate_series(1, 50) g;
CREATE INDEX secret_hnsw ON secret USING hnsw (embedding vector_l2_ops);
CREATE ROLE regress_rv_reader;

SET ROLE regress_rv_reader;
SELECT i->>'index' AS index FROM jsonb_array_elements(ruvector_dag_healing_status()->'indexes') i;
SELECT ruvector_dag_index_health('secret_hnsw');
SELECT * FROM ruvector_dag_hnsw_levels('secret_hnsw');
SELECT ruvector_dag_recall_estimate('secret_hnsw');
-- Recording issues and tuning results is reserved to ruvector_healer members.
SELECT ruvector_dag_health_check('secret');
SELECT ruvector_dag_tune_search('secret_hnsw');
RESET ROLE;

-- SELECT on the indexed column is enough.
GRANT SELECT (embedding) ON secret TO regress_rv_reader;
SET ROLE regress_rv_reader;
SELECT (ruvector_dag_index_health('secret_hnsw')->>'heap_tids')::int AS heap_tids;
-- The status lists indexes of tables the role may read (some column of).
SELECT i->>'index' AS index FROM jsonb_array_elements(ruvector_dag_healing_status()->'indexes') i;
RESET ROLE;

GRANT ruvector_healer TO regress_rv_reader;
SET ROLE regress_rv_reader;
SELECT jsonb_array_length(ruvector_dag_health_check('secret')->'issues') AS issues;
SELECT (ruvector_dag_tune_search('secret_hnsw', 0.5, 5, 20)->>'reachable')::bool AS tuned;
-- A repair takes ruvector_healer and the right to maintain the table.
SELECT ruvector_dag_repair_index('secret_hnsw', 'rebuild', dry_run => true);
RESET ROLE;
GRANT MAINTAIN ON secret TO regress_rv_reader;
SET ROLE regress_rv_reader;
SELECT ruvector_dag_repair_index('secret_hnsw', 'rebuild', dry_run => true) > 0 AS requested;
SELECT count(*) AS repairs_seen FROM ruvector_dag_repair_history('secret');
RESET ROLE;

-- Rows about a table are visible only to roles that may read it.
CREATE ROLE regress_rv_stranger;
SET ROLE regress_rv_stranger;
SELECT count(*) AS issues_seen FROM ruvector_healing.issues;
SELECT count(*) AS tuning_seen FROM ruvector_healing.search_settings;
SELECT count(*) AS repairs_seen FROM ruvector_dag_repair_history(NULL);
SELECT count(*) AS origin_seen FROM ruvector_healing.origin;
RESET ROLE;
DROP ROLE regress_rv_stranger;

DROP TABLE secret;
DROP ROLE regress_rv_reader;
-- The dry run above is not part of the next test's history.
DELETE FROM ruvector_healing.repairs;
