"""Settings of the storage commands (``fleetgate db ...``): FLEETGATE_CASSANDRA__* variables."""

from __future__ import annotations

from pydantic import Field

from fleetgate.settings import CassandraConnection, CommonSettings


class StoreSettings(CommonSettings):
    """Where Cassandra is and how the keyspace is replicated.

    E.g. ``FLEETGATE_CASSANDRA__HOSTS=10.0.0.1,10.0.0.2``, ``FLEETGATE_CASSANDRA__PORT=9042``,
    ``FLEETGATE_CASSANDRA__KEYSPACE=fleetgate``, ``FLEETGATE_CASSANDRA__REPLICATION=network``,
    ``FLEETGATE_CASSANDRA__DATACENTERS='{"dc1": 3}'``, ``FLEETGATE_CASSANDRA__LOCAL_DC=dc1``.
    """

    cassandra: CassandraConnection = Field(default_factory=CassandraConnection)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=600)
