-- Recall estimate and search tuning: the SQL surface.
CREATE TABLE r (id int PRIMARY KEY, embedding vector(4));
INSERT INTO r SELECT g, ARRAY[sin(g), cos(g), sin(g * 0.37), cos(g * 1.7)]::vector
  FROM generate_series(1, 3000) g;
INSERT INTO r VALUES (0, NULL);
CREATE INDEX r_ivf ON r USING ivfflat (embedding vector_l2_ops) WITH (lists = 10);
CREATE INDEX r_hnsw ON r USING hnsw (embedding vector_l2_ops);

SELECT jsonb_object_keys(ruvector_dag_recall_estimate('r_hnsw')) AS key ORDER BY 1;

-- Probing every list is an exact search: recall is 1, whatever the sample.
SET ivfflat.probes = 10;
SELECT e->'recall' AS recall, e->'sample_size' AS sample_size, e->'k' AS k, e->'rows' AS rows,
       e->'setting' AS setting, e->'short_results' AS short_results, e->'recall_ci95'->1 AS ci_high
  FROM ruvector_dag_recall_estimate('r_ivf', 200, 5) e;
-- The caller's setting is untouched.
SHOW ivfflat.probes;
RESET ivfflat.probes;

-- One probe of ten lists misses neighbours in other lists.
SELECT (e->>'recall')::float8 < 1 AS below_one,
       (e->'recall_ci95'->>0)::float8 <= (e->>'recall')::float8
         AND (e->>'recall')::float8 <= (e->'recall_ci95'->>1)::float8 AS inside_ci
  FROM ruvector_dag_recall_estimate('r_ivf') e;

-- HNSW: the estimate is a proportion with its interval.
SELECT (e->>'recall')::float8 BETWEEN 0 AND 1 AS recall_ok, e->'setting' AS setting,
       e->'metric' AS metric, e->'sample_size' AS sample_size
  FROM ruvector_dag_recall_estimate('r_hnsw', 50, 10) e;

-- Other distances and halfvec.
CREATE INDEX r_cos ON r USING ivfflat (embedding vector_cosine_ops) WITH (lists = 4);
CREATE INDEX r_ip ON r USING ivfflat (embedding vector_ip_ops) WITH (lists = 4);
CREATE INDEX r_half ON r USING ivfflat ((embedding::halfvec(4)) halfvec_l2_ops) WITH (lists = 4);
SET ivfflat.probes = 4;
SELECT e->>'index' AS index, e->>'metric' AS metric, e->>'type' AS type, e->'recall' AS recall
  FROM unnest(ARRAY['r_cos', 'r_ip', 'r_half']::regclass[]) i, ruvector_dag_recall_estimate(i, 100, 10) e
 ORDER BY 1;
RESET ivfflat.probes;

-- A partial index holds only the rows its predicate admits; the truth is
-- computed over exactly those rows.
CREATE INDEX r_part ON r USING ivfflat (embedding vector_l2_ops) WITH (lists = 2) WHERE id % 3 = 0;
SET ivfflat.probes = 2;
SELECT e->'rows' AS rows, e->'recall' AS recall
  FROM ruvector_dag_recall_estimate('r_part', 50, 10) e;
RESET ivfflat.probes;
DROP INDEX r_part;

-- Tuning: the smallest probes that reach the target, with its curve; stored, not applied.
SELECT t->'setting' AS setting, t->'reachable' AS reachable, (t->>'recommended_value')::int <= 10 AS in_range,
       t->'recall_at_recommended' AS recall, t->'search_range' AS search_range, t->'applied' AS applied,
       jsonb_array_length(t->'curve') <= 6 AS log_steps
  FROM ruvector_dag_tune_search('r_ivf', 1.0, 10) t;
SHOW ivfflat.probes;
SELECT index, setting, reachable, measured_recall, target_recall, k, sample_size
  FROM ruvector_dag_search_settings('r_ivf');

-- An empty index has a defined result; tuning it is refused.
CREATE TABLE r_empty (embedding vector(3));
CREATE INDEX r_empty_hnsw ON r_empty USING hnsw (embedding vector_l2_ops);
SELECT e->'recall' AS recall, e->'sample_size' AS sample_size, e->'note' AS note
  FROM ruvector_dag_recall_estimate('r_empty_hnsw') e;
SELECT ruvector_dag_tune_search('r_empty_hnsw');

-- Bad input.
SELECT ruvector_dag_recall_estimate('r_hnsw', 0);
SELECT ruvector_dag_recall_estimate('r_hnsw', 10001);
SELECT ruvector_dag_recall_estimate('r_hnsw', 100, 0);
SELECT ruvector_dag_recall_estimate('r_hnsw', 100, 1001);
SELECT ruvector_dag_recall_estimate('r_hnsw', queries => 'workload');
SELECT ruvector_dag_recall_estimate('r_hnsw', queries => 'random');
SELECT ruvector_dag_recall_estimate(NULL);
SELECT ruvector_dag_recall_estimate('r_pkey');
SELECT ruvector_dag_tune_search('r_hnsw', 1.5);
SELECT ruvector_dag_tune_search('r_hnsw', 0);
CREATE TABLE r_bit (b bit(8));
INSERT INTO r_bit SELECT (g % 256)::bit(8) FROM generate_series(1, 10) g;
CREATE INDEX r_bit_hnsw ON r_bit USING hnsw (b bit_hamming_ops);
SELECT ruvector_dag_recall_estimate('r_bit_hnsw');

DROP TABLE r, r_empty, r_bit;
