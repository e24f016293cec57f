"""Storage: tables, the engine, migrations and the repository that writes webhooks and events."""
