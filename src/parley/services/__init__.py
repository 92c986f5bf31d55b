"""Use cases shared by the API, CLI, demo loader and jobs (one module per family)."""
