"""Faust stream processors (shadow, commands, telemetry) and their Cassandra store.

See ``processors/README.md``. Nothing is imported or started here.
"""
