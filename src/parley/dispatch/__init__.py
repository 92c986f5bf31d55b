"""The send pipeline: outbox jobs, the dispatcher, retries, rate limits, reconciliation."""
