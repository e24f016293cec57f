"""The ingest pipeline: verify, journal, gate by flags, normalize, persist, signal."""
