"""Templates of the local Cassandra node's configuration (read with importlib.resources)."""
