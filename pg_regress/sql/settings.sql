-- Every setting with its default, range and who may change it.
SELECT name, setting, unit, vartype, min_val, max_val, context
  FROM pg_settings WHERE name LIKE 'ruvector.%' ORDER BY name;

-- Out of range: refused with the range in the message.
SET ruvector.dag_healing_threshold = 7;
SET ruvector.dag_healing_target_recall = 0.1;
SET ruvector.dag_healing_anomaly_sensitivity = 1.5;
ALTER SYSTEM SET ruvector.dag_healing_max_concurrent_repairs = 0;
-- The prefix is reserved: a misspelt setting is an error, not a silent placeholder.
SET ruvector.nonsense = 1;
SET ruvector.dag_healing_treshold = 0.5;
-- In range: accepted.
SET ruvector.dag_healing_threshold = 0.5;
SHOW ruvector.dag_healing_threshold;
RESET ruvector.dag_healing_threshold;
-- Server-wide settings cannot be changed in a session.
SET ruvector.dag_healing_interval_ms = 5000;

-- Superuser-only settings are refused to ordinary roles; the recall target is a user's own.
CREATE ROLE regress_rv_user;
SET ROLE regress_rv_user;
SET ruvector.dag_healing_enabled = off;
SET ruvector.dag_healing_threshold = 0.5;
SET ruvector.dag_healing_target_recall = 0.9;
SHOW ruvector.dag_healing_target_recall;
RESET ROLE;
DROP ROLE regress_rv_user;
