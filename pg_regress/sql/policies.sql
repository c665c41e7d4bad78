-- Policies: exclusion, strategy, pinned lists, threshold overrides, for the
-- database, a schema, a table or an index; the most specific one applies.
CREATE TABLE pol_items (id int PRIMARY KEY, embedding vector(3));
INSERT INTO pol_items SELECT g, ARRAY[g % 11, g % 7, g % 5]::vector FROM generate_series(1, 200) g;
CREATE INDEX pol_hnsw ON pol_items USING hnsw (embedding vector_l2_ops);
CREATE INDEX pol_btree ON pol_items (id);

SELECT ruvector_dag_set_index_policy(NULL);
SELECT ruvector_dag_set_index_policy('pol_btree', excluded => true);
SELECT ruvector_dag_set_table_policy('pol_hnsw', excluded => true);
SELECT ruvector_dag_set_index_policy('pol_hnsw', strategy => 'reindex');
SELECT ruvector_dag_set_index_policy('pol_hnsw', thresholds => '[1]');
SELECT ruvector_dag_set_index_policy('pol_hnsw', thresholds => '{"max_fragmentaton": 0.2}');
SELECT ruvector_dag_set_index_policy('pol_hnsw', thresholds => '{"max_fragmentation": -1}');
SELECT ruvector_dag_set_schema_policy('no_such_schema', excluded => true);
SELECT ruvector_dag_reset_policy('cluster');

SELECT p - 'updated_at' AS policy
  FROM ruvector_dag_set_index_policy('pol_hnsw', strategy => 'none', thresholds => '{"max_fragmentation": 0.2}') p;
-- NULL keeps what is set.
SELECT p - 'updated_at' AS policy FROM ruvector_dag_set_index_policy('pol_hnsw', excluded => true) p;
SELECT p - 'updated_at' AS policy FROM ruvector_dag_set_table_policy('pol_items', strategy => 'rebuild') p;
SELECT p - 'updated_at' AS policy FROM ruvector_dag_set_schema_policy('public', pin_lists => true) p;
SELECT p - 'updated_at' AS policy FROM ruvector_dag_set_database_policy(thresholds => '{"min_dead_tuples": 500}') p;
SELECT scope, schema_name, object_name, excluded, strategy, pin_lists, thresholds
  FROM ruvector_healing.index_policies ORDER BY 1, 2, 3;
SELECT ruvector_dag_reset_policy('index', 'public', 'pol_hnsw'), ruvector_dag_reset_policy('index', 'public', 'pol_hnsw');
SELECT ruvector_dag_reset_policy('table', 'public', 'pol_items'), ruvector_dag_reset_policy('schema', 'public'),
       ruvector_dag_reset_policy('database');
SELECT count(*) AS policies FROM ruvector_healing.index_policies;

-- Setting policies is reserved to ruvector_healer; reading them is not.
CREATE ROLE regress_rv_pol;
SET ROLE regress_rv_pol;
SELECT ruvector_dag_set_index_policy('pol_hnsw', excluded => true);
SELECT ruvector_dag_set_database_policy(excluded => true);
SELECT count(*) FROM ruvector_healing.index_policies;
RESET ROLE;
DROP ROLE regress_rv_pol;
DROP TABLE pol_items;
-- An index's own search setting: pgvector's range, pgvector indexes only,
-- kept in the index's policy; NULL removes it.
CREATE TABLE pol_s (id int PRIMARY KEY, embedding vector(3));
CREATE INDEX pol_s_hnsw ON pol_s USING hnsw (embedding vector_l2_ops);
SELECT ruvector_dag_set_search_setting('pol_s_hnsw', 0);
SELECT ruvector_dag_set_search_setting('pol_s_hnsw', 1001);
SELECT ruvector_dag_set_search_setting('pol_s_pkey', 10);
SELECT ruvector_dag_set_search_setting(NULL, 10);
SELECT ruvector_dag_set_search_setting('pol_s_hnsw', 100);
SELECT search_value FROM ruvector_healing.index_policies WHERE object_name = 'pol_s_hnsw';
SELECT ruvector_dag_set_search_setting('pol_s_hnsw', NULL);
SELECT search_value FROM ruvector_healing.index_policies WHERE object_name = 'pol_s_hnsw';
DROP TABLE pol_s;
-- A cycle on demand is for ruvector_healer too.
CREATE ROLE regress_rv_cycle;
SET ROLE regress_rv_cycle;
SELECT ruvector_dag_run_cycle();
RESET ROLE;
DROP ROLE regress_rv_cycle;
