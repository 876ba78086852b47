"""The command line: `loom` and its subcommands (ask, chat, demo, serve, query, data, catalog)."""
