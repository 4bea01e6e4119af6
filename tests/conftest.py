"""Shared pytest fixtures: the embedded Kafka broker and a real PostgreSQL server.

The broker starts only when a test asks for ``kafka_broker`` or ``kafka_settings``; the
PostgreSQL server only when one asks for ``postgres_url`` or ``pg_store_url``.
"""

import warnings

# kafka-python 3.0.12 loads its ~100 protocol schemas at import time with importlib.resources
# functions deprecated since Python 3.11: a wall of warnings that says nothing about this
# project. Importing it here, first and quietly, keeps them out of every test report.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
    import kafka  # noqa: F401

from tests.kafka_fixtures import kafka_broker, kafka_settings
from tests.postgres_fixtures import pg_store_url, postgres_server, postgres_url

__all__ = ["kafka_broker", "kafka_settings", "pg_store_url", "postgres_server", "postgres_url"]
