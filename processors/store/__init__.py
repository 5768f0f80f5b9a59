"""Cassandra storage of the processors: async session, schema, migrations.

- :mod:`processors.store.session`: ``CassandraSession`` (asyncio bridge, prepared cache)
- :mod:`processors.store.schema`: pure helpers (replication, migration files, buckets)
- :mod:`processors.store.migrate`: ``migrate`` / ``status`` against a keyspace
- :mod:`processors.store.cli`: ``fleetgate db migrate | status``
"""
