-- HNSW inspection against independent ground truth (count(*), the catalog).
-- Level assignment in pgvector is random, so only invariants are printed.
CREATE TABLE h (id int PRIMARY KEY, embedding vector(4));
INSERT INTO h SELECT g, ARRAY[sin(g), cos(g), sin(g * 0.37), cos(g * 1.7)]::vector
  FROM generate_series(1, 600) g;
INSERT INTO h VALUES (0, NULL);  -- no index stores NULL
CREATE INDEX h_l2 ON h USING hnsw (embedding vector_l2_ops) WITH (m = 8, ef_construction = 32);

SELECT jsonb_object_keys(ruvector_dag_index_health('h_l2')) AS key ORDER BY 1;

SELECT r->>'am' AS am, r->>'index' AS index, r->>'table' AS tbl, r->>'metric' AS metric,
       r->>'type' AS type, r->'dimensions' AS dims, r->'m' AS m, r->'ef_construction' AS efc,
       (r->>'pages')::bigint * 8192 = pg_relation_size('h_l2') AS pages_ok,
       (r->>'bytes')::bigint = pg_relation_size('h_l2') AS bytes_ok,
       (r->>'heap_tids')::bigint = (SELECT count(embedding) FROM h) AS heap_tids_ok,
       (r->>'elements_live')::bigint = (SELECT count(embedding) FROM h) AS live_ok,
       r->'elements_deleted' AS deleted, r->'elements_zombie' AS zombie,
       r->'fragmentation' AS fragmentation, r->'unreachable' AS unreachable,
       r->'connectivity_score' AS connectivity, r->'dangling_edges' AS dangling,
       (SELECT sum(x::bigint) FROM jsonb_array_elements_text(r->'layer_distribution') x)
           = (r->>'elements_live')::bigint AS layers_sum_ok,
       jsonb_array_length(r->'layer_distribution') = (r->>'max_level')::int + 1 AS levels_ok,
       (r->>'layer0_fill')::float8 BETWEEN 0 AND 1 AS fill_in_range,
       r->'skipped_metrics' AS skipped
  FROM ruvector_dag_index_health('h_l2') r;

-- Per level: live elements per level add up to the live count; layer 0 holds everyone.
SELECT sum(live_elements) = (SELECT count(embedding) FROM h) AS levels_sum_ok,
       bool_and(live_in_layer >= live_elements) AS layer_contains_level,
       min(level) AS lowest, bool_and(max_out_degree <= CASE WHEN level = 0 THEN 16 ELSE 8 END) AS degree_within_m
  FROM ruvector_dag_hnsw_levels('h_l2');
SELECT level, expected_elements, expected_in_layer FROM ruvector_dag_hnsw_levels('h_l2') WHERE level <= 1;

-- A healthy graph has no unreachable element.
SELECT count(*) FROM ruvector_dag_hnsw_unreachable('h_l2');

-- DELETE, then VACUUM: pgvector marks the elements deleted; the counts follow.
DELETE FROM h WHERE id % 3 = 0;
SELECT (r->>'heap_tids')::bigint AS heap_tids_before_vacuum FROM ruvector_dag_index_health('h_l2') r;
VACUUM h;
SELECT (r->>'heap_tids')::bigint = (SELECT count(embedding) FROM h) AS heap_tids_ok,
       r->'elements_deleted' AS deleted, r->'elements_live' AS live,
       r->'fragmentation' AS fragmentation  -- 200 of 600 slots
  FROM ruvector_dag_index_health('h_l2') r;

-- Other operator classes and types.
CREATE INDEX h_cos ON h USING hnsw (embedding vector_cosine_ops);
CREATE INDEX h_ip ON h USING hnsw (embedding vector_ip_ops);
CREATE INDEX h_l1 ON h USING hnsw (embedding vector_l1_ops);
CREATE INDEX h_half ON h USING hnsw ((embedding::halfvec(4)) halfvec_l2_ops);
SELECT r->>'index' AS index, r->>'metric' AS metric, r->>'type' AS type,
       (r->>'heap_tids')::bigint = (SELECT count(embedding) FROM h) AS heap_tids_ok,
       r->'skipped_metrics' AS skipped
  FROM unnest(ARRAY['h_cos', 'h_ip', 'h_l1', 'h_half']::regclass[]) i,
       ruvector_dag_index_health(i) r ORDER BY 1;

-- bit and sparsevec: structure is reported.
CREATE TABLE hb (id int, b bit(16), s sparsevec(8));
INSERT INTO hb SELECT g, (g * 2654435761 % 65536)::bit(16), ('{1:' || g || ',5:' || (g % 9 + 1) || '}/8')::sparsevec
  FROM generate_series(1, 200) g;
CREATE INDEX hb_bit ON hb USING hnsw (b bit_hamming_ops);
CREATE INDEX hb_sparse ON hb USING hnsw (s sparsevec_l2_ops);
SELECT r->>'index' AS index, r->>'type' AS type, r->>'metric' AS metric,
       (r->>'heap_tids')::bigint AS heap_tids, r->'skipped_metrics' AS skipped
  FROM unnest(ARRAY['hb_bit', 'hb_sparse']::regclass[]) i, ruvector_dag_index_health(i) r ORDER BY 1;

-- An empty index.
CREATE TABLE he (embedding vector(2));
CREATE INDEX he_idx ON he USING hnsw (embedding vector_l2_ops);
SELECT r->'elements_total' AS total, r->'unreachable' AS unreachable, r->'connectivity_score' AS connectivity,
       r->'entry_point' AS entry_point
  FROM ruvector_dag_index_health('he_idx') r;
SELECT * FROM ruvector_dag_hnsw_levels('he_idx');

-- Verification: sound indexes of every kind report no violation (the
-- NOTICE says what was checked; edge counts vary between builds, so only
-- the empty index's is shown); a NULL index is refused.
SET client_min_messages = warning;
SELECT * FROM unnest(ARRAY['hb_bit', 'hb_sparse']::regclass[]) i,
       ruvector_dag_verify_index(i, heapallindexed => true) v;
RESET client_min_messages;
SELECT * FROM ruvector_dag_verify_index('he_idx', heapallindexed => true);
SELECT * FROM ruvector_dag_verify_index(NULL);

DROP TABLE h, hb, he;
