"""The ways in: HTTP API, CLI."""
