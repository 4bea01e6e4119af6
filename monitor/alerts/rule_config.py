"""The ``alerts`` section of the configuration: declarative rules, validated at start-up.

Three kinds of rule turn detections and hot spots into alerts:

``unrest``
    Frame unrest probability over a volcano or region (``detection.v1`` of kind
    ``interferogram_unrest``), with LiCSAlert-style persistence: the alert is raised only
    when ``persistence.n`` of the last ``persistence.m`` interferograms reach the level,
    so one atmospheric false positive pages no one. ``scope: tile`` makes one alert per
    tile instead (typically inhibited by the volcano-level alert).
``ps_trend``
    PS points changing class (e.g. Stable -> Quadratic/Bilinear, i.e. starting to
    accelerate) in an update (``detection.v1`` of kind ``ps_trend_change``); the metric is
    the number of such points per store tile, or inside the rule's area.
``hotspot``
    Active deformation areas (``hotspot.v1``): a new ADA whose velocity (or area, points)
    reaches a level, and an update when it grows by ``area_growth_ratio``. ``areas``
    picks the clustered areas (``areas``, ids ``ada-...``), the ones the delineation U-Net
    outlined (``delineated_areas``, ids ``dada-...``) or both.

Every rule has ``levels`` (severity with a raise threshold and a lower clear threshold:
hysteresis), ``clear_after`` (consecutive observations below the clear threshold before
the alert resolves), ``repeat_interval_days``, ``cooldown_days`` (a re-raise this soon
after resolution reopens the same alert instead of creating a new one) and
``expire_after_days`` (a firing alert without any new observation for this long, in event
time, expires). Times are event time (acquisition dates), so a replay decides the same.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.alerts.levels import Certainty, Severity, Urgency
from monitor.alerts.matchers import parse_matcher

TrendClass = Literal["stable", "linear", "quadratic", "bilinear", "pue"]
RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_:-]{0,99}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Circle(_Strict):
    longitude: float = Field(ge=-180, le=180)
    latitude: float = Field(ge=-90, le=90)
    radius_km: float = Field(gt=0, le=1000)


class AreaSpec(_Strict):
    """A named area: a circle or a GeoJSON Polygon/MultiPolygon (longitude, latitude)."""

    name: str = Field(min_length=1, description="Shown as the CAP areaDesc.")
    circle: Circle | None = None
    geometry: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> AreaSpec:
        if (self.circle is None) == (self.geometry is None):
            raise ValueError("an area needs exactly one of circle or geometry")
        if self.geometry is not None:
            from monitor.alerts.subscriptions import geometry_of

            geom = geometry_of(self.geometry)
            if geom.geom_type not in ("Polygon", "MultiPolygon"):
                raise ValueError(f"area geometry must be a Polygon or MultiPolygon, got "
                                 f"{geom.geom_type}")
        return self


class Level(_Strict):
    """One severity step: raised at ``raise_at``, held until below ``clear_at``."""

    severity: Severity
    raise_at: float
    clear_at: float | None = Field(
        None, description="Hysteresis: the level holds until the metric drops below this "
        "(default: raise_at)."
    )
    urgency: Urgency | None = None
    certainty: Certainty | None = None

    @model_validator(mode="after")
    def _clear_below_raise(self) -> Level:
        if self.clear_at is not None and self.clear_at > self.raise_at:
            raise ValueError(
                f"clear_at ({self.clear_at}) must not exceed raise_at ({self.raise_at})"
            )
        return self

    @property
    def clear_threshold(self) -> float:
        return self.raise_at if self.clear_at is None else self.clear_at


class Persistence(_Strict):
    """Raise only when ``n`` of the last ``m`` observations reach the level."""

    n: int = Field(1, ge=1, le=50)
    m: int = Field(1, ge=1, le=50)

    @model_validator(mode="after")
    def _n_le_m(self) -> Persistence:
        if self.n > self.m:
            raise ValueError(f"persistence n ({self.n}) cannot exceed m ({self.m})")
        return self


class _RuleBase(_Strict):
    name: str = Field(pattern=RULE_NAME_PATTERN, description="Unique; part of every alert id.")
    enabled: bool = True
    description: str = ""
    levels: list[Level] = Field(min_length=1)
    persistence: Persistence = Persistence()
    clear_after: int = Field(
        1, ge=1, le=50, description="Consecutive observations below clear_at to resolve."
    )
    repeat_interval_days: int | None = Field(
        None, ge=1, description="Re-send a still-firing alert after this many days (event time)."
    )
    cooldown_days: int = Field(
        0, ge=0, description="A re-raise within this many days of resolution reopens the alert."
    )
    expire_after_days: int = Field(
        60, ge=1, description="A firing alert with no observation for this long expires."
    )
    growth_ratio: float | None = Field(
        None, gt=0,
        description="Send an update when the metric grew by this fraction since the last "
        "notification (same level).",
    )
    instruction: str = ""
    labels: dict[str, str] = Field({}, description="Extra labels for silences and inhibition.")

    @field_validator("levels")
    @classmethod
    def _ascending(cls, levels: list[Level]) -> list[Level]:
        from monitor.alerts.levels import severity_rank

        for lower, higher in pairwise(levels):
            if higher.raise_at <= lower.raise_at:
                raise ValueError("levels must have increasing raise_at")
            if severity_rank(higher.severity) <= severity_rank(lower.severity):
                raise ValueError("levels must have increasing severity")
        return levels


class UnrestRule(_RuleBase):
    """Frame unrest probability over a volcano or region, with persistence."""

    kind: Literal["unrest"]
    scope: Literal["volcano", "tile"] = "volcano"
    volcano_id: str | None = Field(None, description="Match products of this volcano.")
    region_id: str | None = Field(None, description="Match products of this region.")
    frames: list[str] = Field([], description="Match products of these frames.")
    place_name: str | None = Field(None, description="Display name (default: the id).")
    area: AreaSpec | None = Field(
        None, description="Only tiles intersecting it count; also the CAP area. Without it "
        "the alert area is the fired tiles' extent, and a rule with no volcano_id, "
        "region_id or frames watches every volcano separately."
    )
    levels: list[Level] = Field(
        [
            Level(severity="Moderate", raise_at=0.5, clear_at=0.3),
            Level(severity="Severe", raise_at=0.8, clear_at=0.6),
        ],
        min_length=1,
    )
    persistence: Persistence = Persistence(n=2, m=3)
    clear_after: int = Field(2, ge=1, le=50)
    instruction: str = (
        "Review the interferograms and the fired tiles with the observatory's other "
        "monitoring data before any public statement."
    )

    @model_validator(mode="after")
    def _probabilities(self) -> UnrestRule:
        for level in self.levels:
            if not 0 < level.raise_at <= 1:
                raise ValueError("unrest levels are probabilities: raise_at in (0, 1]")
        return self


class PSTrendRule(_RuleBase):
    """PS points changing class (e.g. starting to accelerate) in one update."""

    kind: Literal["ps_trend"]
    datasets: list[str] = Field([], description="Datasets watched (empty: all).")
    from_classes: list[TrendClass] = Field(["stable", "linear"], min_length=1)
    to_classes: list[TrendClass] = Field(["quadratic", "bilinear"], min_length=1)
    min_probability: float = Field(
        0.5, ge=0, le=1, description="Changes the model is less sure of are ignored."
    )
    area: AreaSpec | None = Field(
        None, description="Count only points inside it (one place for the whole area); "
        "without it every store tile is its own place."
    )
    buffer_m: float = Field(
        100.0, ge=0, le=10000, description="Alert area: changed points' hull buffered by this."
    )
    levels: list[Level] = Field(
        [Level(severity="Moderate", raise_at=10), Level(severity="Severe", raise_at=50)],
        min_length=1,
    )
    instruction: str = (
        "Check the accelerating points' time series and the site; consider field inspection."
    )


class HotspotRule(_RuleBase):
    """Active deformation areas from the rolling Gi* hot spots."""

    kind: Literal["hotspot"]
    datasets: list[str] = Field([], description="Datasets watched (empty: all).")
    signs: list[Literal["hot", "cold"]] = Field(["hot", "cold"], min_length=1)
    areas: Literal["clustered", "delineated", "both"] = Field(
        "clustered",
        description="Which areas of hotspot.v1 are watched: clustered (areas: significant "
        "points clustered, ids ada-...), delineated (delineated_areas: outlined by the "
        "delineation U-Net, ids dada-...; place label scope=delineated_ada) or both (each "
        "area its own place).",
    )
    metric: Literal[
        "mean_abs_velocity_mm_yr", "max_abs_velocity_mm_yr", "area_m2", "n_points"
    ] = "mean_abs_velocity_mm_yr"
    min_area_m2: float = Field(0.0, ge=0, description="Smaller ADAs are ignored.")
    min_points: int = Field(1, ge=1, description="ADAs with fewer points are ignored.")
    area_growth_ratio: float | None = Field(
        0.5, gt=0, description="Update when the ADA's area grew by this fraction since the "
        "last notification."
    )
    levels: list[Level] = Field(
        [
            Level(severity="Minor", raise_at=10, clear_at=7),
            Level(severity="Moderate", raise_at=20, clear_at=15),
        ],
        min_length=1,
    )
    expire_after_days: int = Field(120, ge=1)
    instruction: str = "Inspect the active deformation area and its points' time series."


Rule = Annotated[UnrestRule | PSTrendRule | HotspotRule, Field(discriminator="kind")]


class InhibitRuleConfig(_Strict):
    """While a firing alert matches ``source``, alerts matching ``target`` with the same
    values of the ``equal`` labels are not notified."""

    source: list[str] = Field(min_length=1, description="Matchers, e.g. scope=volcano.")
    target: list[str] = Field(min_length=1, description="Matchers, e.g. scope=tile.")
    equal: list[str] = []

    @field_validator("source", "target")
    @classmethod
    def _parse(cls, items: list[str]) -> list[str]:
        for item in items:
            parse_matcher(item)
        return items


class CapConfig(_Strict):
    """The CAP 1.2 documents written for every alert revision."""

    sender: str = Field("insar-monitor@localhost", description="CAP <sender> (unique).")
    sender_name: str = Field("insar-monitor", description="CAP <senderName>.")
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = Field(
        "Actual", description="CAP <status>; use Exercise or Test outside operations."
    )
    language: str = Field("en-US", description="CAP <language> of the texts (RFC 3066).")
    contact: str | None = Field(None, description="CAP <contact>: whom to call about alerts.")


def _default_rules() -> list[Any]:
    return [
        UnrestRule(name="unrest", kind="unrest"),
        PSTrendRule(name="ps-acceleration", kind="ps_trend"),
        HotspotRule(name="active-deformation-area", kind="hotspot"),
    ]


class AlertsConfig(BaseModel):
    """Alert rules, inhibition, CAP output (see monitor/alerts/rule_config.py)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(True, description="Evaluate alert rules after every pass.")
    rules: list[Rule] = Field(
        default_factory=_default_rules,
        description="Alert rules (kinds unrest, ps_trend, hotspot); the defaults watch every "
        "volcano, PS tile and ADA.",
    )
    inhibit_rules: list[InhibitRuleConfig] = Field(
        [InhibitRuleConfig(source=["scope=volcano"], target=["scope=tile"], equal=["volcano_id"])],
        description="Alertmanager-style inhibition (default: a volcano alert mutes its tiles).",
    )
    cap: CapConfig = CapConfig()
    max_records_per_partition: int = Field(
        5000, ge=1, description="Detections/hot spots one alert evaluation reads per partition."
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Any]) -> list[Any]:
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {dupes}")
        return rules
