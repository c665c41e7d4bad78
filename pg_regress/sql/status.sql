-- Status: configuration, versions, visible indexes, open issues.
CREATE TABLE status_items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO status_items SELECT g, ARRAY[g, g % 7, g % 5]::vector FROM generate_series(1, 100) g;
CREATE INDEX status_hnsw ON status_items USING hnsw (embedding vector_l2_ops);

SELECT jsonb_object_keys(ruvector_dag_healing_status()) AS key ORDER BY 1;
SELECT s->'extension_version' AS ext, s->'library_version' AS lib, s->'preloaded' AS preloaded,
       s->>'pgvector_version' = (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_ok,
       s->>'server_version' = current_setting('server_version') AS server_ok,
       s->'config' AS config
  FROM ruvector_dag_healing_status() s;
-- Indexes it can see, with sizes from the catalog.
SELECT i->>'index' AS index, i->>'table' AS table, i->>'am' AS am, i->>'opclass' AS opclass,
       (i->>'bytes')::bigint = pg_relation_size('status_hnsw') AS bytes_ok, i->'valid' AS valid
  FROM jsonb_array_elements(ruvector_dag_healing_status()->'indexes') i
 WHERE i->>'table' = 'status_items';
-- The configuration follows the session's settings.
SET ruvector.dag_healing_target_recall = 0.9;
SELECT ruvector_dag_healing_status()->'config'->'target_recall';
RESET ruvector.dag_healing_target_recall;
DROP TABLE status_items;
