"""The REST API (FastAPI): app factory, dependencies, schemas and one router per resource."""
