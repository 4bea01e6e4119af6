"""Label matchers, silences and inhibition, with Alertmanager's semantics.

A matcher is ``label op value`` with ``op`` one of ``=``, ``!=``, ``=~`` (regular
expression, anchored at both ends) and ``!~``. A missing label reads as the empty string,
as in Alertmanager, so ``volcano_id!=etna`` matches alerts without a volcano.

- A **silence** (matchers + a wall-clock window) suppresses the notification of every
  alert revision whose labels all match, while it is active. The revision is still
  recorded and published with ``suppressed.silenced_by`` set.
- An **inhibition rule** (source matchers, target matchers, labels that must be equal)
  suppresses a target alert while a *firing* source alert with the same values of the
  ``equal`` labels exists, e.g. a volcano-level unrest alert inhibits the tile-level alerts
  of the same volcano. An alert never inhibits itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

Op = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    """One ``label op value`` condition."""

    label: str
    op: Op
    value: str

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile(rf"(?:{self.value})\Z")

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as e:
                raise ValueError(f"matcher {self}: bad regular expression: {e}") from e

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.label, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = self._regex.match(got) is not None
        return hit if self.op == "=~" else not hit

    def to_json_dict(self) -> dict[str, str]:
        return {"label": self.label, "op": self.op, "value": self.value}


def parse_matcher(text: str | Mapping[str, Any]) -> Matcher:
    """``'severity=~Severe|Extreme'`` or ``{"label":..., "op":..., "value":...}`` to a Matcher.

    Quotes around the value are optional: ``volcano_id="etna"`` equals ``volcano_id=etna``.

    >>> parse_matcher('scope="tile"').matches({"scope": "tile"})
    True
    """
    if isinstance(text, Mapping):
        op = text.get("op", "=")
        if op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"matcher {dict(text)}: op must be one of = != =~ !~")
        try:
            return Matcher(str(text["label"]), op, str(text["value"]))
        except KeyError as e:
            raise ValueError(f"matcher {dict(text)} lacks {e}") from e
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(
            f"matcher {text!r} is not 'label op value' with op one of = != =~ !~ "
            "(e.g. volcano_id=etna, severity=~Severe|Extreme)"
        )
    label, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return Matcher(label, op, value)  # type: ignore[arg-type]


def parse_matchers(items: Iterable[str | Mapping[str, Any]]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(i) for i in items)


def all_match(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True)
class Silence:
    """Suppress notifications of matching alerts between ``starts_at`` and ``ends_at``."""

    silence_id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""

    def active_at(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def silences(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active_at(now) and all_match(self.matchers, labels)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "silence_id": self.silence_id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "created_by": self.created_by,
            "comment": self.comment,
        }


@dataclass(frozen=True)
class InhibitRule:
    """A firing source alert suppresses target alerts that agree on ``equal`` labels."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def inhibits(self, source_labels: Mapping[str, str], target_labels: Mapping[str, str]) -> bool:
        return (
            all_match(self.source, source_labels)
            and all_match(self.target, target_labels)
            and all(source_labels.get(k, "") == target_labels.get(k, "") for k in self.equal)
        )


def suppression(
    labels: Mapping[str, str],
    alert_id: str,
    *,
    now: datetime,
    silences: Sequence[Silence],
    inhibit_rules: Sequence[InhibitRule],
    firing: Iterable[tuple[str, Mapping[str, str]]],
) -> dict[str, list[str]]:
    """Which silences and which firing alerts suppress the alert with ``labels``.

    Parameters
    ----------
    labels, alert_id
        The alert being decided.
    now
        Wall-clock time (silences are operational, not event-time, windows).
    silences, inhibit_rules
        The active silences and the configured inhibition rules.
    firing
        ``(alert_id, labels)`` of the alerts firing now (after this batch's transitions).

    Returns
    -------
    dict
        ``{"silenced_by": [silence ids], "inhibited_by": [alert ids]}``, both sorted.
    """
    silenced_by = sorted(s.silence_id for s in silences if s.silences(labels, now))
    inhibited_by: set[str] = set()
    if inhibit_rules:
        for source_id, source_labels in firing:
            if source_id == alert_id:
                continue
            if any(r.inhibits(source_labels, labels) for r in inhibit_rules):
                inhibited_by.add(source_id)
    return {"silenced_by": silenced_by, "inhibited_by": sorted(inhibited_by)}
