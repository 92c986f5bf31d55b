"""PostgreSQL persistence: engine and pools, the embedded server, models and migrations."""
