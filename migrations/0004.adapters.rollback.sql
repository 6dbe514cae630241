DROP TABLE IF EXISTS training_jobs;
DROP TABLE IF EXISTS adapter_deployments;
DROP TABLE IF EXISTS adapters;
