DROP TABLE IF EXISTS adapter_deployments;
DROP TABLE IF EXISTS adapters;
