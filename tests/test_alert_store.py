"""The alert store on both of its backends: SQLite (embedded) and a real PostgreSQL 15 server.

Every test runs twice, through the ``store`` fixture: once on an SQLite file and once on a
database of its own on the session's PostgreSQL server (``tests/postgres_fixtures.py``).
The revisions are ``alert.v1`` payloads built from ``tests/data/alert_event_example.json``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import IntegrityError

from monitor.alerts.subscriptions import Subscription, SubscriptionSpec
from monitor.storage.alert_store import AlertBatch, AlertStore, StateChange

EXAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "alert_event_example.json").read_text()
)
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
# A zone east of UTC with a non-whole-hour offset: a backend that drops or misreads offsets
# shifts times by an amount no test could mistake for a coincidence.
PLUS_0530 = timezone(timedelta(hours=5, minutes=30))

Bbox = tuple[float, float, float, float]
ETNA: Bbox = (14.85, 37.65, 15.15, 37.85)
CAMPI_FLEGREI: Bbox = (14.05, 40.78, 14.20, 40.88)
PO_VALLEY: Bbox = (11.0, 44.8, 12.0, 45.2)


def polygon(bbox: Bbox) -> dict[str, Any]:
    """A GeoJSON polygon covering ``bbox`` (west, south, east, north)."""
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def revision(
    rev: int = 1,
    *,
    rule: str = "unrest-etna",
    place: str = "volcano-etna",
    episode: int = 1,
    state: str = "firing",
    severity: str = "Severe",
    hazard: str = "volcanic_unrest",
    bbox: Bbox = ETNA,
    sent_at: datetime | None = None,
    silenced_by: Sequence[str] = (),
    inhibited_by: Sequence[str] = (),
) -> dict[str, Any]:
    """An ``alert.v1`` revision of alert ``<rule>.<place>.e<episode>``, sent T0 + rev minutes."""
    alert_id = f"{rule}.{place}.e{episode}"
    event = copy.deepcopy(EXAMPLE)
    closed = state != "firing"
    event.update(
        alert_id=alert_id,
        alert_event_id=f"{alert_id}#{rev}",
        revision=rev,
        references=[f"{alert_id}#{r}" for r in range(1, rev)],
        state=state,
        transition="resolved" if closed else ("opened" if rev == 1 else "updated"),
        msg_type="Cancel" if closed else ("Alert" if rev == 1 else "Update"),
        severity=severity,
        hazard=hazard,
        sent_at=(sent_at or T0 + timedelta(minutes=rev)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        suppressed={"silenced_by": list(silenced_by), "inhibited_by": list(inhibited_by)},
    )
    event["rule"] = {"name": rule, "kind": "unrest"}
    event["place"] = {"key": place, "name": place}
    event["area"] = {"description": place, "geometry": polygon(bbox), "bbox": list(bbox)}
    event["labels"] = {**event["labels"], "rule": rule, "hazard": hazard, "severity": severity}
    return event


def ids(events: Sequence[dict[str, Any]]) -> list[str]:
    return [e["alert_event_id"] for e in events]


def subscribe(
    store: AlertStore,
    name: str,
    *,
    area: Bbox | None = None,
    hazards: Sequence[str] = (),
    min_severity: str = "Minor",
) -> Subscription:
    spec = SubscriptionSpec(
        name=name,
        url=f"https://hooks.example.org/{name}",
        area=polygon(area) if area is not None else None,
        hazards=tuple(hazards),
        min_severity=min_severity,
    )
    sub, _secret = store.add_subscription(spec, now=T0)
    return sub


def recipients(store: AlertStore, alert_event_id: str) -> set[str]:
    """Subscription ids with a delivery queued for one revision."""
    return {
        d["subscription_id"] for d in store.list_deliveries(alert_event_id=alert_event_id)
    }


def is_utc(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertStore]:
    """An empty alert store on SQLite (a file in tmp_path) or on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'alerts.sqlite'}"
    else:
        url = request.getfixturevalue("pg_store_url")
    alert_store = AlertStore(url)
    yield alert_store
    alert_store.close()


# ---------------------------------------------------------------------- apply


def test_apply_writes_states_alert_revision_and_deliveries_for_matching_subscribers(
    store: AlertStore,
) -> None:
    everywhere = subscribe(store, "everywhere")
    over_etna = subscribe(store, "over-etna", area=(15.0, 37.7, 15.5, 38.0))  # overlaps
    elsewhere = subscribe(store, "elsewhere", area=CAMPI_FLEGREI)
    ground_only = subscribe(store, "ground-only", hazards=["ground_deformation"])
    unrest_severe = subscribe(store, "unrest-severe", hazards=["volcanic_unrest"],
                              min_severity="Severe")
    extreme_only = subscribe(store, "extreme-only", min_severity="Extreme")
    gone = subscribe(store, "gone")
    assert store.deactivate_subscription(gone.subscription_id)
    assert not store.deactivate_subscription("no-such-subscription")

    event = revision(1, severity="Severe")
    batch = AlertBatch(
        states=[
            StateChange("unrest-etna", "volcano-etna", True, {"level": "Severe", "hits": [1, 2]}),
            StateChange("unrest-etna", "volcano-vesuvio", False, {"level": None, "hits": []}),
        ],
        events=[event],
    )

    assert store.apply(batch, now=T0) == [event["alert_event_id"]]

    assert store.load_states() == {
        ("unrest-etna", "volcano-etna"): {"level": "Severe", "hits": [1, 2]},
        ("unrest-etna", "volcano-vesuvio"): {"level": None, "hits": []},
    }
    assert list(store.load_states(active_only=True)) == [("unrest-etna", "volcano-etna")]
    assert store.load_states("other-rule") == {}
    assert store.get_alert(event["alert_id"]) == event
    assert store.get_event(event["alert_event_id"]) == event
    assert store.alert_history(event["alert_id"]) == [event]
    assert store.firing_labels() == [(event["alert_id"], event["labels"])]
    assert recipients(store, event["alert_event_id"]) == {
        everywhere.subscription_id,
        over_etna.subscription_id,
        unrest_severe.subscription_id,
    }
    assert elsewhere.subscription_id not in recipients(store, event["alert_event_id"])
    assert ground_only.subscription_id not in recipients(store, event["alert_event_id"])
    assert extreme_only.subscription_id not in recipients(store, event["alert_event_id"])
    queued = store.list_deliveries()
    assert {(d["status"], d["attempts"]) for d in queued} == {("pending", 0)}
    assert {d["next_attempt_at"] for d in queued} == {T0.isoformat()}


def test_apply_updates_an_existing_rule_state(store: AlertStore) -> None:
    key = ("unrest-etna", "volcano-etna")
    store.apply(AlertBatch(states=[StateChange(*key, True, {"n": 1})]), now=T0)
    store.apply(AlertBatch(states=[StateChange(*key, False, {"n": 2})]), now=T0)
    assert store.load_states() == {key: {"n": 2}}
    assert store.load_states(active_only=True) == {}


@pytest.mark.parametrize(
    ("breakage", "error"),
    [("headline is null", IntegrityError), ("area is missing", KeyError)],
)
def test_a_batch_that_fails_midway_writes_nothing(
    store: AlertStore, breakage: str, error: type[Exception]
) -> None:
    subscribe(store, "everywhere")
    key = ("unrest-etna", "volcano-etna")
    store.apply(AlertBatch(states=[StateChange(*key, False, {"before": True})]), now=T0)
    good = revision(1)
    bad = revision(1, rule="unrest-campi", place="volcano-campi-flegrei", bbox=CAMPI_FLEGREI)
    if breakage == "headline is null":
        bad["headline"] = None  # violates NOT NULL in the database itself
    else:
        del bad["area"]  # malformed: the store fails while building the row
    batch = AlertBatch(
        states=[StateChange(*key, True, {"before": False}),
                StateChange("unrest-campi", "volcano-campi-flegrei", True, {})],
        events=[good, bad],
    )

    with pytest.raises(error):
        store.apply(batch, now=T0)

    assert store.load_states() == {key: {"before": True}}  # neither updated nor inserted
    assert store.count_events() == 0
    assert store.get_alert(good["alert_id"]) is None
    assert store.list_alerts() == []
    assert store.list_deliveries() == []
    assert store.delivery_counts() == {}


def test_replaying_a_batch_adds_nothing(store: AlertStore) -> None:
    sub = subscribe(store, "everywhere")
    first, second = revision(1, severity="Moderate"), revision(2, severity="Severe")
    batch = AlertBatch(
        states=[StateChange("unrest-etna", "volcano-etna", True, {"n": 1})],
        events=[first, second],
    )
    assert store.apply(batch, now=T0) == ids([first, second])

    assert store.apply(batch, now=T0 + timedelta(hours=1)) == []
    assert store.apply(AlertBatch(events=[second]), now=T0 + timedelta(hours=2)) == []

    assert store.count_events() == 2
    assert store.get_alert(first["alert_id"]) == second
    deliveries = store.list_deliveries(subscription_id=sub.subscription_id)
    assert sorted(d["alert_event_id"] for d in deliveries) == ids([first, second])
    assert {d["created_at"] for d in deliveries} == {T0.isoformat()}  # not queued again
    assert store.delivery_counts() == {"pending": 2}


# ---------------------------------------------------------------------- revisions


def test_a_later_revision_updates_the_alert_and_an_earlier_one_does_not(
    store: AlertStore,
) -> None:
    alert_id = revision(1)["alert_id"]
    store.apply(AlertBatch(events=[revision(1, severity="Moderate")]), now=T0)
    store.apply(AlertBatch(events=[revision(3, severity="Severe")]), now=T0)
    assert store.get_alert(alert_id)["revision"] == 3  # type: ignore[index]

    # Revision 2 arrives late (a replayed older batch): stored in the history only.
    late = revision(2, severity="Extreme")
    assert store.apply(AlertBatch(events=[late]), now=T0) == [late["alert_event_id"]]
    latest = store.get_alert(alert_id)
    assert latest is not None
    assert (latest["revision"], latest["severity"]) == (3, "Severe")
    # The row's own columns (used by the filters) did not move either.
    assert store.list_alerts(min_severity="Extreme") == []
    assert ids(store.list_alerts(min_severity="Severe")) == [f"{alert_id}#3"]
    assert store.list_alerts(since=T0 + timedelta(minutes=3)) == [latest]

    store.apply(AlertBatch(events=[revision(4, state="resolved", severity="Minor")]), now=T0)
    latest = store.get_alert(alert_id)
    assert latest is not None
    assert (latest["revision"], latest["state"], latest["severity"]) == (4, "resolved", "Minor")
    assert store.list_alerts(state="firing") == []
    assert ids(store.list_alerts(state="resolved")) == [f"{alert_id}#4"]
    assert store.firing_labels() == []
    assert [e["revision"] for e in store.alert_history(alert_id)] == [1, 2, 3, 4]
    assert store.alert_history("no-such-alert") == []


def test_updates_and_cancel_reach_earlier_recipients_even_below_their_min_severity(
    store: AlertStore,
) -> None:
    severe = subscribe(store, "severe", min_severity="Severe")
    extreme = subscribe(store, "extreme", min_severity="Extreme")
    first = revision(1, severity="Severe")
    store.apply(AlertBatch(events=[first]), now=T0)
    latecomer = subscribe(store, "latecomer")  # subscribes after the alert was first sent
    update = revision(2, severity="Moderate")
    cancel = revision(3, state="resolved", severity="Minor")
    store.apply(AlertBatch(events=[update, cancel]), now=T0)

    assert recipients(store, first["alert_event_id"]) == {severe.subscription_id}
    # The latecomer is told of the Moderate update (it matches on its own) ...
    assert recipients(store, update["alert_event_id"]) == {
        severe.subscription_id,
        latecomer.subscription_id,
    }
    # ... and so of its end; "extreme" never heard of the alert and is not told it ended.
    assert recipients(store, cancel["alert_event_id"]) == {
        severe.subscription_id,
        latecomer.subscription_id,
    }
    assert store.list_deliveries(subscription_id=extreme.subscription_id) == []


def test_a_resolved_alert_never_seen_by_a_subscriber_is_not_delivered(
    store: AlertStore,
) -> None:
    severe = subscribe(store, "severe", min_severity="Severe")
    store.apply(AlertBatch(events=[revision(1, severity="Minor")]), now=T0)
    cancel = revision(2, state="resolved", severity="Severe")
    store.apply(AlertBatch(events=[cancel]), now=T0)
    # A subscriber created after the alert ended is not told of it either.
    later = subscribe(store, "later")
    store.apply(AlertBatch(events=[revision(3, state="resolved")]), now=T0)

    assert store.list_deliveries(subscription_id=severe.subscription_id) == []
    assert store.list_deliveries(subscription_id=later.subscription_id) == []
    assert store.count_events() == 3


@pytest.mark.parametrize("by", ["silenced_by", "inhibited_by"])
def test_suppressed_revisions_are_stored_but_not_delivered(store: AlertStore, by: str) -> None:
    sub = subscribe(store, "everywhere")
    suppressed = revision(1, **{by: ["suppressor-1"]})  # type: ignore[arg-type]
    assert store.apply(AlertBatch(events=[suppressed]), now=T0) == [
        suppressed["alert_event_id"]
    ]

    assert store.get_event(suppressed["alert_event_id"]) == suppressed
    assert store.list_deliveries() == []
    assert ids(store.list_alerts()) == [suppressed["alert_event_id"]]
    assert store.list_alerts(include_suppressed=False) == []

    # Once the suppression is lifted the next revision is news to the subscriber.
    lifted = revision(2)
    store.apply(AlertBatch(events=[lifted]), now=T0)
    assert recipients(store, lifted["alert_event_id"]) == {sub.subscription_id}
    assert ids(store.list_alerts(include_suppressed=False)) == [lifted["alert_event_id"]]


# ---------------------------------------------------------------------- queries


def test_list_alerts_filters_and_orders_newest_first(store: AlertStore) -> None:
    etna = revision(1, sent_at=T0 + timedelta(minutes=1))
    campi = revision(1, rule="unrest-campi", place="volcano-campi-flegrei", bbox=CAMPI_FLEGREI,
                     severity="Moderate", sent_at=T0 + timedelta(minutes=2))
    po_opened = revision(1, rule="ground-po", place="tile-po", bbox=PO_VALLEY,
                         hazard="ground_deformation", severity="Extreme",
                         sent_at=T0 + timedelta(minutes=3))
    po = revision(2, rule="ground-po", place="tile-po", bbox=PO_VALLEY,
                  hazard="ground_deformation", severity="Extreme", state="resolved",
                  sent_at=T0 + timedelta(minutes=4))
    etna2 = revision(1, episode=2, severity="Minor", silenced_by=["s1"],
                     sent_at=T0 + timedelta(minutes=5))
    store.apply(AlertBatch(events=[etna, campi, po_opened, po, etna2]), now=T0)
    minute = timedelta(minutes=1)

    def listed(**filters: Any) -> list[str]:
        return ids(store.list_alerts(**filters))

    newest_first = ids([etna2, po, campi, etna])
    assert listed() == newest_first
    assert listed(state="firing") == ids([etna2, campi, etna])
    assert listed(state="resolved") == ids([po])
    assert listed(hazard="ground_deformation") == ids([po])
    assert listed(hazard="active_deformation_area") == []
    assert listed(min_severity="Severe") == ids([po, etna])
    assert listed(min_severity="Minor") == newest_first
    assert listed(rule="unrest-etna") == ids([etna2, etna])
    assert listed(since=T0 + 2 * minute) == ids([etna2, po, campi])  # inclusive
    assert listed(until=T0 + 2 * minute) == ids([etna])  # exclusive
    assert listed(since=T0 + 2 * minute, until=T0 + 5 * minute) == ids([po, campi])
    # The same instants written in another zone select the same alerts.
    assert listed(since=(T0 + 2 * minute).astimezone(PLUS_0530)) == ids([etna2, po, campi])
    assert listed(bbox=(15.0, 37.7, 16.0, 38.0)) == ids([etna2, etna])  # overlaps Etna
    assert listed(bbox=(12.0, 45.2, 13.0, 46.0)) == ids([po])  # touches the Po corner
    assert listed(bbox=(0.0, 0.0, 1.0, 1.0)) == []
    assert listed(include_suppressed=False) == ids([po, campi, etna])
    assert listed(limit=2) == ids([etna2, po])
    assert listed(limit=2, offset=2) == ids([campi, etna])
    assert listed(offset=4) == []
    assert listed(state="firing", hazard="volcanic_unrest", min_severity="Moderate",
                  include_suppressed=False) == ids([campi, etna])


def test_outbox_lists_unpublished_revisions_until_marked_published(store: AlertStore) -> None:
    etna1, etna2 = revision(1), revision(2)
    campi = revision(1, rule="unrest-campi", place="volcano-campi-flegrei", bbox=CAMPI_FLEGREI)
    store.apply(AlertBatch(events=[etna1, etna2, campi]), now=T0)

    # Oldest first; revisions sent at the same time in alert id order.
    assert ids(store.unpublished_events()) == ids([campi, etna1, etna2])
    assert ids(store.unpublished_events(limit=1)) == ids([campi])
    store.mark_published([campi["alert_event_id"], etna1["alert_event_id"]], at=T0)
    store.mark_published([])
    assert ids(store.unpublished_events()) == ids([etna2])
    store.mark_published(iter([etna2["alert_event_id"]]))
    assert store.unpublished_events() == []


def test_cap_paths_and_sent_times(store: AlertStore) -> None:
    etna1, etna2 = revision(1), revision(2)
    store.apply(AlertBatch(events=[etna1, etna2]), now=T0)

    assert ids(store.events_without_cap()) == ids([etna1, etna2])
    store.set_cap_path(etna1["alert_event_id"], Path("/srv/cap") / "etna-1.xml")
    assert ids(store.events_without_cap()) == ids([etna2])
    assert ids(store.events_without_cap(limit=0)) == []

    assert store.sent_times([etna1["alert_event_id"], etna2["alert_event_id"], "nope#1"]) == {
        etna1["alert_event_id"]: etna1["sent_at"],
        etna2["alert_event_id"]: etna2["sent_at"],
    }
    assert store.sent_times([]) == {}


# ---------------------------------------------------------------------- deliveries


def test_deliveries_are_due_from_their_next_attempt_and_retried_until_dead(
    store: AlertStore,
) -> None:
    spec = SubscriptionSpec(name="hook", url="https://hooks.example.org/a", format="cap")
    sub, secret = store.add_subscription(spec, now=T0)
    event = revision(1)
    store.apply(AlertBatch(events=[event]), now=T0)
    delivery_id = f"{event['alert_event_id']}>{sub.subscription_id}"

    assert store.due_deliveries(now=T0 - timedelta(seconds=1)) == []
    (task,) = store.due_deliveries(now=T0)
    assert (task.delivery_id, task.alert_event_id, task.subscription_id) == (
        delivery_id, event["alert_event_id"], sub.subscription_id,
    )
    assert (task.url, task.secret, task.format, task.attempts) == (spec.url, secret, "cap", 0)
    assert task.event == event

    retry_at = T0 + timedelta(minutes=1)
    store.mark_failed(delivery_id, error="x" * 5000, status_code=503, next_attempt_at=retry_at)
    assert store.due_deliveries(now=retry_at - timedelta(seconds=1)) == []
    # Times given in another zone are the same instants.
    assert store.due_deliveries(now=(retry_at - timedelta(seconds=1)).astimezone(PLUS_0530)) == []
    (task,) = store.due_deliveries(now=retry_at.astimezone(PLUS_0530))
    assert task.attempts == 1
    (logged,) = store.list_deliveries(status="pending")
    assert (logged["last_status"], len(logged["last_error"])) == (503, 2000)
    assert logged["next_attempt_at"] == retry_at.isoformat()

    store.mark_failed(delivery_id, error="refused", status_code=None, next_attempt_at=None)
    assert store.due_deliveries(now=T0 + timedelta(days=1)) == []
    assert store.delivery_counts() == {"dead": 1}
    (logged,) = store.list_deliveries(status="dead")
    assert (logged["attempts"], logged["last_status"], logged["next_attempt_at"]) == (
        2, None, None,
    )

    replay_at = T0 + timedelta(minutes=5)
    assert store.replay_deliveries(now=replay_at) == 1
    assert store.replay_deliveries(now=replay_at) == 0  # nothing dead any more
    (task,) = store.due_deliveries(now=replay_at)
    assert task.attempts == 0

    store.mark_delivered(delivery_id, status_code=204, at=replay_at)
    assert store.due_deliveries(now=T0 + timedelta(days=1)) == []
    assert store.delivery_counts() == {"delivered": 1}
    (logged,) = store.list_deliveries(status="delivered")
    assert (logged["last_status"], logged["last_error"], logged["delivered_at"]) == (
        204, None, replay_at.isoformat(),
    )
    assert store.replay_deliveries(status="delivered", subscription_id="other") == 0
    assert store.replay_deliveries(status="delivered", subscription_id=sub.subscription_id) == 1
    assert store.delivery_counts() == {"pending": 1}


def test_deliveries_to_inactive_subscriptions_are_not_due(store: AlertStore) -> None:
    kept = subscribe(store, "kept")
    dropped = subscribe(store, "dropped")
    first, second = revision(1), revision(2)
    store.apply(AlertBatch(events=[first]), now=T0)
    store.apply(AlertBatch(events=[second]), now=T0 + timedelta(seconds=1))
    later = T0 + timedelta(hours=1)
    assert len(store.due_deliveries(now=later)) == 4
    assert len(store.due_deliveries(now=later, limit=3)) == 3

    assert store.deactivate_subscription(dropped.subscription_id)
    due = store.due_deliveries(now=later)
    assert [(d.subscription_id, d.alert_event_id) for d in due] == [
        (kept.subscription_id, first["alert_event_id"]),
        (kept.subscription_id, second["alert_event_id"]),
    ]  # oldest first
    assert [s.name for s in store.list_subscriptions(active_only=True)] == ["kept"]
    assert [s.name for s in store.list_subscriptions()] == ["kept", "dropped"]
    assert store.list_deliveries(subscription_id=dropped.subscription_id) != []  # log kept
    # A replay by id touches only the deliveries named.
    dead = f"{first['alert_event_id']}>{kept.subscription_id}"
    store.mark_failed(dead, error="gone", status_code=410, next_attempt_at=None)
    assert store.replay_deliveries(delivery_ids=["unknown"]) == 0
    assert store.replay_deliveries(delivery_ids=[dead], now=later) == 1


def test_subscriptions_round_trip_and_are_validated(store: AlertStore) -> None:
    area = polygon(ETNA)
    spec = SubscriptionSpec(name="civil protection", url="https://cp.example.org/hook",
                            area=area, hazards=("volcanic_unrest",), min_severity="Moderate")
    sub, secret = store.add_subscription(spec, now=T0.astimezone(PLUS_0530))
    assert len(secret) >= 32
    stored = store.get_subscription(sub.subscription_id)
    assert stored == sub
    assert (stored.area, stored.hazards, stored.min_severity, stored.format, stored.active) == (
        area, ("volcanic_unrest",), "Moderate", "json", True,
    )
    assert stored.created_at == T0 and is_utc(stored.created_at)
    assert store.get_subscription("unknown") is None
    with pytest.raises(ValueError, match="http"):
        store.add_subscription(SubscriptionSpec(name="bad", url="ftp://example.org"))
    assert len(store.list_subscriptions()) == 1


# ---------------------------------------------------------------------- silences


def test_add_silence_rejects_unusable_silences(store: AlertStore) -> None:
    window = {"starts_at": T0, "ends_at": T0 + timedelta(hours=1), "created_by": "ops",
              "comment": ""}
    with pytest.raises(ValueError, match="at least one matcher"):
        store.add_silence([], **window)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="regular expression"):
        store.add_silence(["volcano_id=~(etna"], **window)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label op value"):
        store.add_silence(["volcano_id"], **window)  # type: ignore[arg-type]
    for ends_at in (T0, T0 - timedelta(seconds=1)):
        with pytest.raises(ValueError, match="before it starts"):
            store.add_silence(["volcano_id=etna"], starts_at=T0, ends_at=ends_at,
                              created_by="ops", comment="")
    assert store.silences() == []


def test_silences_are_filtered_by_their_window_and_can_be_expired(store: AlertStore) -> None:
    hour = timedelta(hours=1)
    first = store.add_silence(
        ["volcano_id=etna", {"label": "severity", "op": "=~", "value": "Severe|Extreme"}],
        starts_at=T0, ends_at=T0 + hour, created_by="ops", comment="maintenance",
    )
    second = store.add_silence(["scope!=volcano"], starts_at=T0 + 2 * hour,
                               ends_at=T0 + 3 * hour, created_by="ops", comment="")

    assert store.silences() == [first, second]
    assert store.silences(active_at=T0) == [first]  # starts inclusive
    assert store.silences(active_at=T0 + hour) == []  # ends exclusive
    assert store.silences(active_at=T0 + 2.5 * hour) == [second]
    assert store.silences(active_at=T0 - hour) == []
    (stored,) = store.silences(active_at=T0)
    assert [str(m) for m in stored.matchers] == ["volcano_id=etna", "severity=~Severe|Extreme"]
    assert (stored.created_by, stored.comment) == ("ops", "maintenance")

    expired_at = T0 + timedelta(minutes=30)
    assert store.expire_silence(first.silence_id, now=expired_at)
    assert store.silences(active_at=expired_at) == []
    (stored,) = store.silences(active_at=T0 + timedelta(minutes=15))
    assert stored.ends_at == expired_at
    assert not store.expire_silence(first.silence_id, now=T0 + timedelta(minutes=40))
    assert not store.expire_silence("unknown", now=T0)
    assert store.silences(active_at=T0 + 2.5 * hour) == [second]


# ---------------------------------------------------------------------- time and URLs


def test_timestamps_read_back_are_timezone_aware_utc(store: AlertStore) -> None:
    local_start = datetime(2026, 11, 21, 15, 30, tzinfo=PLUS_0530)  # 10:00 UTC
    silence = store.add_silence(["volcano_id=etna"], starts_at=local_start,
                                ends_at=local_start + timedelta(hours=1), created_by="ops",
                                comment="", now=local_start)
    (stored,) = store.silences()
    assert stored == silence
    assert is_utc(stored.starts_at) and is_utc(stored.ends_at)
    assert stored.starts_at == T0  # the instant, not the wall-clock time
    assert store.silences(active_at=T0 + timedelta(minutes=59)) == [stored]
    # A naive time is taken as UTC.
    store.add_silence(["scope=tile"], starts_at=datetime(2026, 11, 22, 0, 0),
                      ends_at=datetime(2026, 11, 22, 1, 0), created_by="ops", comment="")
    assert store.silences()[1].starts_at == datetime(2026, 11, 22, tzinfo=UTC)

    subscribe(store, "everywhere")
    store.apply(AlertBatch(events=[revision(1)]), now=local_start)
    (delivery,) = store.list_deliveries()
    assert delivery["created_at"] == T0.isoformat()  # "+00:00", whatever the server's zone
    (task,) = store.due_deliveries(now=T0)
    assert store.list_subscriptions()[0].created_at.utcoffset() == timedelta(0)
    assert task.attempts == 0


def test_url_for_logs_is_the_url_without_a_password(store: AlertStore) -> None:
    assert "***" not in store.url_for_logs
    assert make_url(store.url_for_logs) == store.url


def test_url_for_logs_hides_the_password_of_a_postgresql_url(pg_store_url: str) -> None:
    # Trust authentication ignores the password, so the store really connects with it.
    url = make_url(pg_store_url).set(password="s3cret-Pa55")
    pg_store = AlertStore(url.render_as_string(hide_password=False))
    try:
        assert "s3cret-Pa55" not in pg_store.url_for_logs
        assert pg_store.url_for_logs == url.render_as_string(hide_password=True)
        assert ":***@127.0.0.1:" in pg_store.url_for_logs
        assert pg_store.count_events() == 0
    finally:
        pg_store.close()


def test_the_session_database_is_a_real_postgresql_15(postgres_url: str) -> None:
    pg_store = AlertStore(postgres_url)
    try:
        with pg_store.engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version_num").scalar_one()
            database = conn.exec_driver_sql("SELECT current_database()").scalar_one()
    finally:
        pg_store.close()
    assert 150000 <= int(version) < 160000
    assert database == "insar_test"
