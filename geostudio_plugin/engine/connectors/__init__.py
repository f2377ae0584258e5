"""Data connectors (Terrakit): availability search, fetch and connection tests, with timeouts,
bounded retries, endpoint overrides and credentials taken only from the job's environment."""
