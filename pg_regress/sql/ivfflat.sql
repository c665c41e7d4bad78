-- IVFFlat inspection against independent ground truth.
CREATE TABLE v (id int PRIMARY KEY, embedding vector(4));
INSERT INTO v SELECT g, ARRAY[sin(g), cos(g), sin(g * 0.37), cos(g * 1.7)]::vector
  FROM generate_series(1, 2000) g;
CREATE INDEX v_l2 ON v USING ivfflat (embedding vector_l2_ops) WITH (lists = 8);

SELECT jsonb_object_keys(ruvector_dag_index_health('v_l2')) AS key ORDER BY 1;

SELECT r->>'am' AS am, r->'lists' AS lists, r->'dimensions' AS dims, r->>'metric' AS metric,
       (r->>'tuples')::bigint = (SELECT count(*) FROM v) AS tuples_ok,
       (r->>'bytes')::bigint = pg_relation_size('v_l2') AS bytes_ok,
       (r->>'list_size_min')::bigint <= (r->>'list_size_max')::bigint AS min_le_max,
       (r->>'list_size_mean')::float8 = 2000.0 / 8 AS mean_ok,
       abs((r->>'cluster_balance')::float8
           - (r->>'list_size_stddev')::float8 / (r->>'list_size_mean')::float8) < 1e-5 AS balance_is_cv,
       r->'centroid_quality' AS centroid_quality,
       (r->>'centroid_drift')::float8 < 0.5 AS drift_small,
       r->'training' ? 'transactions_since_build' AS training_known,
       r->'skipped_metrics' AS skipped
  FROM ruvector_dag_index_health('v_l2') r;

-- One row per list; they add up to the index.
SELECT count(*) AS lists, sum(tuples) AS tuples, bool_and(pages >= 1) AS pages_ok,
       bool_and(mean_distance_to_center >= 0) AS distances_ok
  FROM ruvector_dag_ivfflat_lists('v_l2');

-- DELETE + VACUUM: the lists shrink by exactly the deleted rows.
DELETE FROM v WHERE id % 4 = 0;
VACUUM v;
SELECT (r->>'tuples')::bigint = (SELECT count(*) FROM v) AS tuples_after_vacuum_ok,
       (SELECT sum(tuples) FROM ruvector_dag_ivfflat_lists('v_l2')) = (SELECT count(*) FROM v) AS lists_sum_ok
  FROM ruvector_dag_index_health('v_l2') r;

-- Other operator classes and types; bit gets structure only.
CREATE INDEX v_cos ON v USING ivfflat (embedding vector_cosine_ops) WITH (lists = 4);
CREATE INDEX v_ip ON v USING ivfflat (embedding vector_ip_ops) WITH (lists = 4);
CREATE INDEX v_half ON v USING ivfflat ((embedding::halfvec(4)) halfvec_l2_ops) WITH (lists = 4);
CREATE TABLE vb (b bit(16));
INSERT INTO vb SELECT (g * 2654435761 % 65536)::bit(16) FROM generate_series(1, 500) g;
CREATE INDEX vb_bit ON vb USING ivfflat (b bit_hamming_ops) WITH (lists = 4);
SELECT r->>'index' AS index, r->>'metric' AS metric, r->>'type' AS type, r->'tuples' AS tuples,
       r->'centroid_quality' AS centroid_quality, r->'skipped_metrics' AS skipped
  FROM unnest(ARRAY['v_cos', 'v_ip', 'v_half', 'vb_bit']::regclass[]) i,
       ruvector_dag_index_health(i) r ORDER BY 1;

SELECT * FROM unnest(ARRAY['v_cos', 'v_ip', 'v_half', 'vb_bit']::regclass[]) i,
       ruvector_dag_verify_index(i, heapallindexed => true) v;

DROP TABLE v, vb;
