-- Statistics: the view's columns, a fresh index's row, the health score's
-- formula, the circuit breaker's rule, the metrics' shape, the reset.
CREATE TABLE st_items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO st_items SELECT g, ARRAY[g % 11, g % 7, g % 5]::vector FROM generate_series(1, 200) g;
CREATE INDEX st_hnsw ON st_items USING hnsw (embedding vector_l2_ops) WITH (m = 8);

SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'ruvector_dag_stat_indexes'::regclass AND attnum > 0 ORDER BY attnum;

-- Before any cycle: no inspection, no recall, no score; writes counted
-- since PostgreSQL's statistics began.
SELECT indexrelname, relname, am, options, size_bytes = pg_relation_size('st_hnsw') AS size_ok,
       writes_since, inspected_at IS NULL AS not_inspected, recall IS NULL AS no_recall,
       health_score, open_issues_critical, last_repair_id, circuit_breaker_open
  FROM ruvector_dag_stat_indexes WHERE indexrelname = 'st_hnsw';

-- 70 points for recall against the target, 30 for the structure, whose
-- worst figure at its threshold loses half of them.
SET ruvector.dag_healing_target_recall = 0.95;
SELECT ruvector_healing.health_score(NULL, NULL) AS nothing,
       ruvector_healing.health_score('{"unreachable_ratio": 0}', 0.95) AS perfect,
       ruvector_healing.health_score('{"unreachable_ratio": 0.01}', NULL) AS at_threshold,
       ruvector_healing.health_score('{"fragmentation": 1.0}', 0.95) AS all_structure_lost,
       ruvector_healing.health_score('{}', 0.475) AS half_recall,
       ruvector_healing.health_score('{"cluster_balance": 1.0, "centroid_drift": 0.1}', 0.99) AS ivfflat;
RESET ruvector.dag_healing_target_recall;

-- No finished repair: the breaker is closed.
SELECT ruvector_healing.circuit_breaker_open('st_items'::regclass, 'st_hnsw');

-- The metrics: HELP and TYPE before every family's samples.
SELECT count(*) FILTER (WHERE l LIKE '# HELP %') = count(*) FILTER (WHERE l LIKE '# TYPE %') AS paired,
       bool_and(l ~ '^(# (HELP|TYPE) ruvector_|ruvector_[a-z_]+(\{.*\})? [-+0-9.eE]+|ruvector_[a-z_]+(\{.*\})? NaN)')
           AS well_formed
  FROM regexp_split_to_table(rtrim(ruvector_dag_metrics(), E'\n'), E'\n') l;
SELECT l FROM regexp_split_to_table(ruvector_dag_metrics(), E'\n') l
 WHERE l LIKE 'ruvector_index_size_bytes{%st_hnsw%';

-- No repair runs.
SELECT * FROM ruvector_dag_repair_progress;

SELECT r->'reset' AS reset, r->'stats_reset' IS NOT NULL AS stamped
  FROM ruvector_dag_stat_reset() r;

DROP TABLE st_items;
