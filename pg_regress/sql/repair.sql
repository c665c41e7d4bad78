-- Repairs: requests, plans, the journal and the history.
CREATE TABLE rep_items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO rep_items SELECT g, ARRAY[g % 11, g % 7, g % 5]::vector FROM generate_series(1, 500) g;
CREATE INDEX rep_hnsw ON rep_items USING hnsw (embedding vector_l2_ops) WITH (m = 8);
CREATE INDEX rep_ivf ON rep_items USING ivfflat (embedding vector_l2_ops) WITH (lists = 4);
CREATE INDEX rep_btree ON rep_items (id);

-- Bad input: clear errors, nothing recorded.
SELECT ruvector_dag_repair_index(NULL);
SELECT ruvector_dag_repair_index('rep_btree');
SELECT ruvector_dag_repair_index('rep_items');
SELECT ruvector_dag_repair_index('rep_hnsw', 'reindex');
SELECT ruvector_dag_repair_index('rep_hnsw', NULL);
SELECT ruvector_dag_repair_index('rep_hnsw', 'auto');
SELECT ruvector_dag_repair('rep_items', 12345);
SELECT ruvector_dag_repair('rep_items', NULL);
SELECT ruvector_dag_cancel_repair(12345);
SELECT ruvector_dag_rollback(12345);
CALL ruvector_dag_wait_repair(12345);
CALL ruvector_dag_wait_repair(NULL);
SELECT * FROM ruvector_dag_repair_history('rep_items', 0);
BEGIN;
CALL ruvector_dag_wait_repair(1);
ROLLBACK;
SELECT count(*) AS journal_rows FROM ruvector_healing.repairs;

-- A dry run records the plan and changes nothing.
SELECT ruvector_dag_repair_index('rep_ivf', 'rebuild', dry_run => true) AS dry \gset
SELECT status, strategy, plan->'preview'->>'statement' AS statement,
       plan->'preview'->'lists' AS lists, plan->'reversible' AS reversible, started_at IS NULL AS not_started
  FROM ruvector_healing.repairs WHERE repair_id = :dry;

-- A real rebuild, without keeping the old index.
SET ruvector.dag_healing_rollback_enabled = off;
SELECT ruvector_dag_repair_index('rep_hnsw', 'rebuild') AS id \gset
CALL ruvector_dag_wait_repair(:id, 300) \gset wait_
SELECT status, strategy, error, after->'validation'->'passed' AS validated,
       backup->'kept' AS kept, duration_ms > 0 AS timed
  FROM ruvector_dag_repair_history('rep_items') WHERE repair_id = :id;
SELECT step FROM ruvector_healing.repair_steps WHERE repair_id = :id ORDER BY step_id;
SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'rep_items'::regclass ORDER BY 1;
SELECT pg_get_indexdef('rep_hnsw'::regclass);
-- Cooldown: a second repair of the same index within the hour is refused by the worker, and says so.
SELECT ruvector_dag_repair_index('rep_hnsw', 'rebuild') AS id \gset
CALL ruvector_dag_wait_repair(:id, 300) \gset wait_
SELECT status, error LIKE 'cooldown:%' AS cooldown FROM ruvector_healing.repairs WHERE repair_id = :id;
RESET ruvector.dag_healing_rollback_enabled;
-- A finished repair cannot be cancelled; one that kept no backup cannot be rolled back.
SELECT ruvector_dag_cancel_repair(:id);

-- Healing switched off: the request is recorded as refused, with a warning.
SET ruvector.dag_healing_enabled = off;
SELECT ruvector_dag_repair_index('rep_ivf', 'rebuild') AS id \gset
SELECT status, error FROM ruvector_healing.repairs WHERE repair_id = :id;
RESET ruvector.dag_healing_enabled;

-- Requesting is reserved to ruvector_healer members that may maintain the
-- table; reading the history, to roles that may read the table.
CREATE ROLE regress_rv_repairer;
SET ROLE regress_rv_repairer;
SELECT ruvector_dag_repair_index('rep_hnsw', 'rebuild', true);
SELECT ruvector_dag_cancel_repair(1);
SELECT ruvector_dag_rollback(1);
SELECT ruvector_dag_recover_repairs();
SELECT count(*) > 0 AS sees_history FROM ruvector_dag_repair_history('rep_items');
UPDATE ruvector_healing.repairs SET status = 'planned';
RESET ROLE;
GRANT SELECT ON rep_items TO regress_rv_repairer;
GRANT ruvector_healer TO regress_rv_repairer;
SET ROLE regress_rv_repairer;
SELECT count(*) > 0 AS sees_history FROM ruvector_dag_repair_history('rep_items');
SELECT ruvector_dag_repair_index('rep_hnsw', 'rebuild', true) > 0 AS requested;
RESET ROLE;
GRANT MAINTAIN ON rep_items TO regress_rv_repairer;
SET ROLE regress_rv_repairer;
SELECT ruvector_dag_repair_index('rep_hnsw', 'rebuild', true) > 0 AS requested;
SELECT requested_by FROM ruvector_healing.repairs ORDER BY repair_id DESC LIMIT 1;
RESET ROLE;
DROP TABLE rep_items;
DROP ROLE regress_rv_repairer;
