"""The ledger of output ids already published, so a replayed pass never emits twice.

Offsets are committed only after a pass's outputs are durable, so a crash replays the
uncommitted input (at-least-once). Every output carries a deterministic id (detection
id, dead-letter id); the publishing sink records each id here *after* the broker has
acknowledged it and skips ids it finds. One window remains: a crash between the
broker's acknowledgement and the ledger write. :meth:`EmittedLedger.reconcile` closes
it at start-up by re-reading the tail of each output topic and recording the ids found
there. The ledger is a SQLite file (one daemon per state directory).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

# alert_event_id before alert_id: one alert has many revisions, each published once.
ID_FIELDS = ("detection_id", "dead_letter_id", "hotspot_id", "alert_event_id", "alert_id")


def output_id(payload: dict) -> str:
    """The id field of an output message (whichever of :data:`ID_FIELDS` it has)."""
    for name in ID_FIELDS:
        if name in payload:
            return str(payload[name])
    raise KeyError(f"output message has none of the id fields {ID_FIELDS}")


class EmittedLedger:
    """Ids of outputs the broker acknowledged, per topic."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: each record() is durable on return (WAL keeps it cheap).
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS emitted ("
            " topic TEXT NOT NULL, id TEXT NOT NULL, recorded_at REAL NOT NULL,"
            " PRIMARY KEY (topic, id))"
        )

    def seen(self, topic: str, output_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM emitted WHERE topic = ? AND id = ?", (topic, output_id)
        ).fetchone()
        return row is not None

    def record(self, topic: str, ids: Iterable[str]) -> None:
        now = time.time()
        self._db.executemany(
            "INSERT OR IGNORE INTO emitted (topic, id, recorded_at) VALUES (?, ?, ?)",
            [(topic, i, now) for i in ids],
        )

    def count(self, topic: str | None = None) -> int:
        if topic is None:
            return int(self._db.execute("SELECT COUNT(*) FROM emitted").fetchone()[0])
        return int(
            self._db.execute("SELECT COUNT(*) FROM emitted WHERE topic = ?", (topic,)).fetchone()[0]
        )

    def reconcile(self, settings: object, topics: Iterable[str], records_per_partition: int) -> int:
        """Record the ids found in the last ``records_per_partition`` records of ``topics``.

        Returns the number of ids that were missing from the ledger.
        """
        from pipelines.kafka_io import tail

        added = 0
        for topic in topics:
            ids = []
            for rec in tail(settings, topic, records_per_partition):  # type: ignore[arg-type]
                try:
                    ids.append(output_id(json.loads(rec.value)))
                except (ValueError, KeyError, TypeError):
                    continue  # someone else's message on our topic: not ours to track
            before = self.count(topic)
            self.record(topic, ids)
            added += self.count(topic) - before
        return added

    def close(self) -> None:
        self._db.close()
