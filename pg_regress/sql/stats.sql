-- Statistics: the view's columns, a fresh index's row, the health score's
-- formula, the metrics' shape, the reset.
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
-- worst figure at its threshold loses half of them. Arguments: recall,
-- target, unreachable share, fragmentation, connectivity, list balance,
-- centroid drift.
SELECT ruvector_healing.health_score(NULL, 0.95, NULL, NULL, NULL, NULL, NULL) AS nothing,
       ruvector_healing.health_score(0.95, 0.95, 0, 0, 1, NULL, NULL) AS perfect,
       ruvector_healing.health_score(NULL, 0.95, 0.01, 0, 0.99, NULL, NULL) AS at_threshold,
       ruvector_healing.health_score(0.95, 0.95, 0, 1.0, 1, NULL, NULL) AS all_structure_lost,
       ruvector_healing.health_score(0.475, 0.95, NULL, NULL, NULL, NULL, NULL) AS half_recall,
       ruvector_healing.health_score(0.99, 0.95, NULL, NULL, NULL, 1.0, 0.1) AS ivfflat;

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
