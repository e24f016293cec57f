"""The canonical event contract (schema 1.0) and the identities that key it."""
