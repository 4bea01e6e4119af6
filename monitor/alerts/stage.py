"""The alert stage: detections and hot spots in, durable alerts out, then commit.

It consumes ``insar.detections`` and ``insar.hotspots`` with its own consumer group
(``<group_id>-alerts``), so it works the same after an embedded pass and behind a Flink or
Dataflow job. One run:

1. plans the uncommitted ranges of both topics and reads them;
2. evaluates every rule on every message (:mod:`monitor.alerts.engine`, pure), expires
   alerts idle for too long (event time), decides suppression (silences, inhibition);
3. writes the new rule states, the revisions and the webhook deliveries they cause in
   **one database transaction** (:meth:`AlertStore.apply`);
4. publishes the revisions not yet acknowledged to ``insar.alerts`` (the store is the
   outbox; ``published_at`` is set after the broker's ack) and writes their CAP files;
5. only then commits the input offsets.

A crash anywhere replays the uncommitted messages; the engine skips observations it has
already folded in and the store skips revisions it already has, so nothing is alerted
twice. A crash between the broker's ack and ``mark_published`` could publish a revision
twice: :meth:`AlertStage.prepare` reads the tail of ``insar.alerts`` at start-up and marks
what it finds, the same way the detection ledger is reconciled.

Deliveries to webhooks are not made here: the worker of :mod:`monitor.alerts.webhooks`
sends the queued rows, so a slow subscriber never holds up the stage.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from monitor.alerts.cap import cap_xml, settings_from_config, write_cap_file
from monitor.alerts.engine import Transition, evaluate, expire
from monitor.alerts.matchers import InhibitRule, parse_matchers, suppression
from monitor.alerts.observations import observe
from monitor.alerts.payload import build_alert_event
from monitor.storage.alert_store import AlertBatch, AlertStore, StateChange
from pipelines.kafka_io import (
    KafkaPublisher,
    KafkaSettings,
    commit_offsets,
    plan_pass,
    read_range,
    tail,
)

log = logging.getLogger(__name__)

# Test hook: exit the process once the alerts of a run are durable in the database and on
# the broker, before the offsets are committed and before any webhook delivery.
FAULT_EXIT_AFTER_ALERTS = "INSAR_MONITOR_FAULT_EXIT_AFTER_ALERTS"


@dataclass
class AlertStageReport:
    """What one run of the stage did."""

    messages: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list, repr=False)
    observations: int = 0
    revisions: list[dict[str, Any]] = field(default_factory=list)
    published: int = 0
    cap_files: int = 0
    seconds: float = 0.0


class AlertStage:
    """Evaluate alert rules over the pipeline's outputs.

    Parameters
    ----------
    config : MonitorConfig
    store : AlertStore
    kafka : KafkaSettings
        The pipeline's settings; the stage uses ``group_id + "-alerts"``.
    clock : callable
        Wall clock (tz-aware) for ``sent_at`` and silences; injectable for tests.
    """

    def __init__(
        self,
        config: Any,
        store: AlertStore,
        kafka: KafkaSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.store = store
        self.kafka = replace(kafka, group_id=f"{kafka.group_id}-alerts")
        self.clock = clock
        self.rules = {r.name: r for r in config.alerts.rules}
        self.inhibit_rules = [
            InhibitRule(parse_matchers(r.source), parse_matchers(r.target), tuple(r.equal))
            for r in config.alerts.inhibit_rules
        ]
        self.input_topics = [config.topics.detections, config.topics.hotspots]
        self.output_topic = config.topics.alerts
        self.cap_dir = Path(config.storage.cap_path())
        self.cap = settings_from_config(config)
        self._publisher: KafkaPublisher | None = None

    # ----------------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        """Mark revisions a crashed run published but did not record; flush leftovers."""
        pending = {e["alert_event_id"] for e in self.store.unpublished_events(limit=100000)}
        if pending:
            found = set()
            scan = max(self.config.pipeline.dedupe_scan_records, len(pending))
            for rec in tail(self.kafka, self.output_topic, scan):
                try:
                    found.add(json.loads(rec.value)["alert_event_id"])
                except (ValueError, KeyError, TypeError):
                    continue
            already = sorted(pending & found)
            if already:
                log.warning(
                    "alert revisions found on the broker but not marked published: marking",
                    extra={"revisions": len(already)},
                )
                self.store.mark_published(already)
        self.flush_outputs()

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    # ----------------------------------------------------------------------- one run
    def run_once(self) -> AlertStageReport | None:
        """Process what is new on the input topics; None when there was nothing."""
        ranges = plan_pass(
            self.kafka,
            self.input_topics,
            max_records_per_partition=self.config.alerts.max_records_per_partition,
        )
        if not ranges:
            self.flush_outputs()  # a previous run may have failed after its DB commit
            return None
        start = time.perf_counter()
        messages: list[dict[str, Any]] = []
        for rng in ranges:
            for rec in read_range(self.kafka, rng):
                try:
                    obj = json.loads(rec.value)
                except ValueError:
                    log.warning(
                        "not JSON on an output topic: skipped",
                        extra={"topic": rec.topic, "partition": rec.partition,
                               "offset": rec.offset},
                    )
                    continue
                if isinstance(obj, dict):
                    messages.append(obj)
        report = self.evaluate(messages)
        report.inputs = messages
        report.seconds = time.perf_counter() - start
        published, caps = self.flush_outputs()
        report.published, report.cap_files = published, caps
        if os.environ.get(FAULT_EXIT_AFTER_ALERTS):
            log.error("fault injection: exiting after the alerts were made durable")
            os._exit(71)
        commit_offsets(self.kafka, ranges)
        if report.revisions:
            log.info(
                "alerts evaluated",
                extra={
                    "messages": report.messages,
                    "revisions": len(report.revisions),
                    "published": published,
                },
            )
        return report

    def evaluate(self, messages: Sequence[Mapping[str, Any]]) -> AlertStageReport:
        """Fold messages into the rule states and store the resulting revisions."""
        now = self.clock()
        report = AlertStageReport(messages=len(messages))
        by_rule: dict[str, dict[str, dict[str, Any]]] = {}
        changed: set[tuple[str, str]] = set()
        transitions: list[Transition] = []
        # Each rule's own event-time clock: a volcano's alert must not expire because PS
        # updates from another year arrived.
        newest: dict[str, date] = {}

        def rule_states(rule_name: str) -> dict[str, dict[str, Any]]:
            if rule_name not in by_rule:
                by_rule[rule_name] = {
                    p: st for (_, p), st in self.store.load_states(rule_name).items()
                }
            return by_rule[rule_name]

        for message in messages:
            for rule in self.rules.values():
                if not rule.enabled:
                    continue
                places = rule_states(rule.name)
                for obs in observe(rule, message, _OpenPlaces(places)):
                    report.observations += 1
                    new, step = evaluate(rule, places.get(obs.place_key), obs)
                    places[obs.place_key] = new
                    changed.add((rule.name, obs.place_key))
                    newest[rule.name] = max(newest.get(rule.name, obs.event_time),
                                            obs.event_time)
                    if step is not None:
                        transitions.append(step)

        if newest:
            for (rule_name, place), state in self.store.load_states(active_only=True).items():
                rule = self.rules.get(rule_name)
                if rule is None or rule_name not in newest:
                    continue  # a removed rule's alerts stay as they were; an idle rule's clock
                places = rule_states(rule_name)
                new, step = expire(rule, place, places.get(place, state), newest[rule_name])
                if step is not None:
                    places[place] = new
                    changed.add((rule_name, place))
                    transitions.append(step)

        events = [build_alert_event(t, sent_at=now) for t in transitions]
        self._suppress(events, now)
        batch = AlertBatch(
            states=[
                StateChange(r, p, bool(by_rule[r][p]["active"]), by_rule[r][p])
                for r, p in sorted(changed)
            ],
            events=events,
        )
        new_ids = set(self.store.apply(batch, now=now))
        report.revisions = [e for e in events if e["alert_event_id"] in new_ids]
        return report

    def _suppress(self, events: list[dict[str, Any]], now: datetime) -> None:
        firing = dict(self.store.firing_labels())
        for e in events:  # the batch's own outcome decides who is firing now
            if e["state"] == "firing":
                firing[e["alert_id"]] = e["labels"]
            else:
                firing.pop(e["alert_id"], None)
        silences = self.store.silences(active_at=now)
        for e in events:
            e["suppressed"] = suppression(
                e["labels"],
                e["alert_id"],
                now=now,
                silences=silences,
                inhibit_rules=self.inhibit_rules,
                firing=firing.items(),
            )

    # ----------------------------------------------------------------------- outputs
    def flush_outputs(self) -> tuple[int, int]:
        """Publish unpublished revisions to Kafka and write missing CAP files."""
        published = 0
        pending = self.store.unpublished_events()
        if pending:
            if self._publisher is None:
                self._publisher = KafkaPublisher(self.kafka)
            self._publisher.publish_many(
                self.output_topic,
                [
                    (e["alert_id"], json.dumps(e, sort_keys=True).encode("utf-8"))
                    for e in pending
                ],
            )
            self.store.mark_published([e["alert_event_id"] for e in pending])
            published = len(pending)
        caps = 0
        for e in self.store.events_without_cap():
            refs = self.store.sent_times(e["references"])
            xml = cap_xml(e, settings=self.cap, references=[(r, refs[r]) for r in e["references"]])
            path = write_cap_file(self.cap_dir, e, xml)
            self.store.set_cap_path(e["alert_event_id"], path)
            caps += 1
        return published, caps


class _OpenPlaces(Mapping[str, Mapping[str, Any]]):
    """``place_key -> labels (+ place_name)`` view of one rule's states, built on access."""

    def __init__(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        self._states = states

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        s = self._states[key]
        return {**s["labels"], "place_name": s["place_name"]}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: object) -> bool:
        return key in self._states
