"""The /heartbeat endpoint: the release, the service, and whether the database is usable."""
