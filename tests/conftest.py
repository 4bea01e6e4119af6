"""Shared pytest fixtures: the embedded Kafka broker is available to every test.

The broker starts only when a test asks for ``kafka_broker`` or ``kafka_settings``.
"""

import warnings

# kafka-python 3.0.12 loads its ~100 protocol schemas at import time with importlib.resources
# functions deprecated since Python 3.11: a wall of warnings that says nothing about this
# project. Importing it here, first and quietly, keeps them out of every test report.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
    import kafka  # noqa: F401

from tests.kafka_fixtures import kafka_broker, kafka_settings

__all__ = ["kafka_broker", "kafka_settings"]
