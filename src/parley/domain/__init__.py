"""Pure domain model: channels, message statuses, the status machine and value objects.

Nothing in this package performs I/O; adapters (storage, channels, api) depend on it.
"""
