"""The Kafka message contracts: parse, validate and build versioned JSON messages.

Every message on the insar-monitor topics is a UTF-8 JSON object whose ``schema`` field names
its contract (``interferogram.v1``, ``ps_update.v1``, ``detection.v1``, ``dead_letter.v1``).
The contracts are JSON Schema (draft 2020-12) files under ``pipelines/schemas/`` so that
producers in any language can check what they send; ``docs/messages.md`` describes them.

This module is the only place that turns bytes into typed input messages
(:func:`parse_message`) and output records into bytes (:func:`to_bytes`). It refuses bad input
with :class:`MessageError`, whose ``reason`` is the code routed to the dead-letter topic:

``not_json``
    not UTF-8, not JSON (NaN/Infinity included), or not a JSON object;
``unknown_schema``
    ``schema`` missing or not an input contract this version reads;
``schema_error``
    the object breaks its JSON Schema (or an inline part cannot be decoded);
``bad_dates``
    ``primary_date >= secondary_date``, or PS epochs not increasing;
``inline_too_large``
    an inline raster beyond :data:`INLINE_MAX_CHARS` base64 characters.

Event time always comes from the payload (acquisition dates), never from Kafka timestamps,
which old brokers do not even carry.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any, Protocol

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from pipelines.raster_io import ProductError
from serving.signatures import TREND_CLASSES

SCHEMA_NAMES: tuple[str, ...] = (
    "interferogram.v1", "ps_update.v1", "detection.v1", "dead_letter.v1", "hotspot.v1",
    "alert.v1",
)

TOPIC_INTERFEROGRAMS = "insar.interferograms"
TOPIC_PS_UPDATES = "insar.ps-updates"
TOPIC_DETECTIONS = "insar.detections"
TOPIC_DLQ = "insar.dlq"
TOPIC_HOTSPOTS = "insar.hotspots"
TOPIC_ALERTS = "insar.alerts"
TOPICS: dict[str, str] = {
    "interferogram.v1": TOPIC_INTERFEROGRAMS,
    "ps_update.v1": TOPIC_PS_UPDATES,
    "detection.v1": TOPIC_DETECTIONS,
    "dead_letter.v1": TOPIC_DLQ,
    "hotspot.v1": TOPIC_HOTSPOTS,
    "alert.v1": TOPIC_ALERTS,
}

# Inline rasters ride inside a Kafka message, whose default size limit is ~1 MB; half of that
# leaves room for the envelope and keeps big products on the claim-check path (uri).
INLINE_MAX_CHARS = 512 * 1024
RASTER_FORMATS = ("geotiff", "netcdf")
PS_POINT_FORMATS = ("egms_csv", "parquet")
DETECTION_KINDS = ("interferogram_unrest", "ps_trend_change")
# Error texts end up in one DLQ line; JSON Schema messages can quote whole instances.
_MAX_ERROR_CHARS = 300
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class MessageError(ProductError):
    """A message cannot be accepted; ``reason`` is a short machine-friendly code.

    A subclass of :class:`pipelines.raster_io.ProductError`, so one ``except ProductError``
    routes decode, fetch and read failures alike to the dead-letter topic.
    """


# --------------------------------------------------------------------------- typed messages


@dataclass(frozen=True)
class RasterRef:
    """A raster by reference (``uri``) or carried inline (``inline`` = the file's bytes).

    Exactly one of ``uri`` and ``inline`` is set. ``format`` is ``"geotiff"``, ``"netcdf"``
    or None (guessed from the suffix or magic bytes); ``sha256`` (hex) must match the
    fetched bytes when given. ``size_bytes`` is the file size the producer declares: a
    declared size over the fetch limit is refused before the file is touched.
    """

    uri: str | None = None
    inline: bytes | None = None
    format: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None

    def __post_init__(self) -> None:
        if (self.uri is None) == (self.inline is None):
            raise ValueError("RasterRef needs exactly one of uri or inline")
        if self.format is not None and self.format not in RASTER_FORMATS:
            raise ValueError(
                f"RasterRef.format must be one of {RASTER_FORMATS}, got {self.format!r}"
            )

    def describe(self) -> str:
        """Short text naming the raster in error messages (the URI, or the inline size)."""
        if self.uri is not None:
            return self.uri
        return f"inline raster ({len(self.inline or b'')} bytes)"


@dataclass(frozen=True)
class InterferogramMessage:
    """An ``interferogram.v1`` message (topic ``insar.interferograms``, key ``frame_id``)."""

    product_id: str
    frame_id: str
    primary_date: date
    secondary_date: date
    wrapped_phase: RasterRef
    coherence: RasterRef | None = None
    unwrapped: RasterRef | None = None
    region_id: str | None = None
    volcano_id: str | None = None
    published_at: str | None = None

    @property
    def event_time(self) -> date:
        """The secondary (later) acquisition date: when the observed change had happened."""
        return self.secondary_date


@dataclass(frozen=True)
class PSPoint:
    """One inline persistent scatterer: displacement in mm per epoch of the update (None = gap)."""

    pid: str
    longitude: float
    latitude: float
    displacement_mm: tuple[float | None, ...]
    quality: float | None = None


@dataclass(frozen=True)
class PSUpdateMessage:
    """A ``ps_update.v1`` message (topic ``insar.ps-updates``, key ``dataset_id/tile_id``).

    Points are either inline (``points``) or in an EGMS-layout file (``points_uri`` with
    ``points_format`` ``"egms_csv"`` or ``"parquet"``, and optionally its declared size
    ``points_size_bytes``).
    """

    update_id: str
    dataset_id: str
    tile_id: str
    epochs: tuple[date, ...]
    points: tuple[PSPoint, ...] | None = None
    points_uri: str | None = None
    points_format: str | None = None
    published_at: str | None = None
    points_size_bytes: int | None = None

    @property
    def store_key(self) -> str:
        """``dataset_id/tile_id``: the Kafka key and the PS store key of this update."""
        return f"{self.dataset_id}/{self.tile_id}"

    @property
    def event_time(self) -> date:
        """The last epoch the update adds."""
        return self.epochs[-1]


@dataclass(frozen=True)
class RecordRef:
    """Where a Kafka record was read: the ``source`` of detections and dead letters."""

    topic: str
    partition: int
    offset: int

    @property
    def id(self) -> str:
        """``topic/partition/offset``, unique per record of a cluster."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def to_json_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": int(self.partition), "offset": int(self.offset)}


class FrameResult(Protocol):
    """What :func:`detection_unrest` needs from a frame decision (e.g. ``FrameScore``)."""

    def to_json_dict(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- schemas


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the JSON Schema of contract ``name`` (e.g. ``"interferogram.v1"``).

    Raises
    ------
    KeyError
        If ``name`` is not in :data:`SCHEMA_NAMES`.
    """
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = resources.files("pipelines").joinpath("schemas", f"{name}.json").read_text("utf-8")
    return json.loads(text)


def _check_datetime(value: object) -> bool:
    # jsonschema checks "date-time" only when rfc3339-validator is installed; check it here so
    # the contract does not depend on an optional package.
    if not isinstance(value, str):
        return True
    if not _DATETIME.match(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00"))  # ValueError for 2024-02-30 etc.
    return True


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    checker = FormatChecker()
    checker.checks("date-time", raises=ValueError)(_check_datetime)
    return Draft202012Validator(load_schema(name), format_checker=checker)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def validate(schema_name: str, obj: Mapping[str, Any]) -> None:
    """Check ``obj`` against the JSON Schema ``schema_name``.

    Raises
    ------
    MessageError
        ``schema_error``, with the message ``"<schema>: <json path>: <what is wrong>"`` naming
        the most relevant error (jsonschema's ``best_match``).
    """
    error = best_match(_validator(schema_name).iter_errors(obj))
    if error is None:
        return
    # jsonschema's messages for oneOf quote the whole instance and those for patterns quote
    # the regex; the schemas carry a readable text for those keywords under "x-error".
    text = error.message
    custom = error.schema.get("x-error") if isinstance(error.schema, dict) else None
    if custom and error.validator == "oneOf":
        text = custom
    elif custom and error.validator in ("pattern", "format"):
        text = f"{custom} (got {error.instance!r})"
    raise MessageError("schema_error", _short(f"{schema_name}: {error.json_path}: {text}"))


# --------------------------------------------------------------------------- parsing


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e400 parses to inf: as unusable as NaN downstream, so refuse it at the door.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _load_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MessageError("not_json", f"message is not UTF-8 text ({e})") from e
    try:
        # Python's json accepts NaN/Infinity by default; other languages' parsers do not.
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except ValueError as e:
        raise MessageError("not_json", _short(f"message is not valid JSON ({e})")) from e
    if not isinstance(obj, dict):
        raise MessageError(
            "not_json", f"message is a JSON {type(obj).__name__}, expected an object"
        )
    return obj


def _raster_ref(obj: Mapping[str, Any], field: str) -> RasterRef:
    inline = None
    if "inline" in obj:
        text = obj["inline"]
        if len(text) > INLINE_MAX_CHARS:
            raise MessageError(
                "inline_too_large",
                f"{field}.inline has {len(text)} base64 characters (max {INLINE_MAX_CHARS}); "
                "publish the raster by uri instead",
            )
        try:
            inline = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise MessageError("schema_error", f"{field}.inline is not valid base64 ({e})") from e
    return RasterRef(
        uri=obj.get("uri"), inline=inline, format=obj.get("format"), sha256=obj.get("sha256"),
        size_bytes=obj.get("size_bytes"),
    )


def _parse_interferogram(obj: dict[str, Any]) -> InterferogramMessage:
    primary = date.fromisoformat(obj["primary_date"])
    secondary = date.fromisoformat(obj["secondary_date"])
    if primary >= secondary:
        raise MessageError(
            "bad_dates",
            f"primary_date {primary} is not before secondary_date {secondary}; "
            "primary is the earlier acquisition",
        )
    optional = {
        field: _raster_ref(obj[field], field) if field in obj else None
        for field in ("coherence", "unwrapped")
    }
    return InterferogramMessage(
        product_id=obj["product_id"],
        frame_id=obj["frame_id"],
        primary_date=primary,
        secondary_date=secondary,
        wrapped_phase=_raster_ref(obj["wrapped_phase"], "wrapped_phase"),
        coherence=optional["coherence"],
        unwrapped=optional["unwrapped"],
        region_id=obj.get("region_id"),
        volcano_id=obj.get("volcano_id"),
        published_at=obj.get("published_at"),
    )


def _parse_ps_update(obj: dict[str, Any]) -> PSUpdateMessage:
    epochs = tuple(date.fromisoformat(e) for e in obj["epochs"])
    for a, b in itertools.pairwise(epochs):
        if b <= a:
            raise MessageError(
                "bad_dates", f"epochs must increase, but {b} follows {a}; sort the epochs"
            )
    points = None
    if "points" in obj:
        parsed = []
        for i, p in enumerate(obj["points"]):
            disp = p["displacement_mm"]
            if len(disp) != len(epochs):
                raise MessageError(
                    "schema_error",
                    f"ps_update.v1: $.points[{i}].displacement_mm: {len(disp)} values for "
                    f"{len(epochs)} epochs; give one value (or null) per epoch",
                )
            quality = p.get("quality")
            parsed.append(
                PSPoint(
                    pid=p["pid"],
                    longitude=float(p["longitude"]),
                    latitude=float(p["latitude"]),
                    displacement_mm=tuple(None if v is None else float(v) for v in disp),
                    quality=None if quality is None else float(quality),
                )
            )
        points = tuple(parsed)
    return PSUpdateMessage(
        update_id=obj["update_id"],
        dataset_id=obj["dataset_id"],
        tile_id=obj["tile_id"],
        epochs=epochs,
        points=points,
        points_uri=obj.get("points_uri"),
        points_format=obj.get("points_format"),
        published_at=obj.get("published_at"),
        points_size_bytes=obj.get("points_size_bytes"),
    )


# A v2 contract is added here next to v1 so that both are read during a transition.
_PARSERS: dict[str, Callable[[dict[str, Any]], InterferogramMessage | PSUpdateMessage]] = {
    "interferogram.v1": _parse_interferogram,
    "ps_update.v1": _parse_ps_update,
}


def parse_message(raw: bytes) -> InterferogramMessage | PSUpdateMessage:
    """Decode, validate and type one input message (a Kafka record value).

    Parameters
    ----------
    raw : bytes
        The record value: UTF-8 JSON with ``"schema": "interferogram.v1"`` or
        ``"ps_update.v1"``.

    Returns
    -------
    InterferogramMessage or PSUpdateMessage

    Raises
    ------
    MessageError
        ``not_json``, ``unknown_schema``, ``schema_error``, ``bad_dates`` or
        ``inline_too_large`` (see the module docstring).
    """
    obj = _load_json(raw)
    name = obj.get("schema")
    if not isinstance(name, str) or name not in _PARSERS:
        if name is None:
            what = "no 'schema' field"
        elif name in SCHEMA_NAMES:
            what = f"{name} is an output contract, not an input"
        else:
            what = f"schema {_short(repr(name))} is not known to this reader"
        raise MessageError("unknown_schema", f"{what}; expected one of {', '.join(_PARSERS)}")
    validate(name, obj)
    return _PARSERS[name](obj)


# --------------------------------------------------------------------------- encoding


def to_bytes(obj: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of ``obj`` (NaN/Infinity refused: they are not JSON)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def _raster_ref_dict(ref: RasterRef) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ref.uri is not None:
        out["uri"] = ref.uri
    else:
        out["inline"] = base64.b64encode(ref.inline or b"").decode("ascii")
    if ref.format is not None:
        out["format"] = ref.format
    if ref.sha256 is not None:
        out["sha256"] = ref.sha256
    if ref.size_bytes is not None:
        out["size_bytes"] = int(ref.size_bytes)
    return out


def _drop_none(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def interferogram_to_dict(msg: InterferogramMessage) -> dict[str, Any]:
    """The validated ``interferogram.v1`` object of ``msg`` (optional fields left out when None)."""
    obj = _drop_none(
        {
            "schema": "interferogram.v1",
            "product_id": msg.product_id,
            "frame_id": msg.frame_id,
            "primary_date": msg.primary_date.isoformat(),
            "secondary_date": msg.secondary_date.isoformat(),
            "wrapped_phase": _raster_ref_dict(msg.wrapped_phase),
            "coherence": msg.coherence and _raster_ref_dict(msg.coherence),
            "unwrapped": msg.unwrapped and _raster_ref_dict(msg.unwrapped),
            "region_id": msg.region_id,
            "volcano_id": msg.volcano_id,
            "published_at": msg.published_at,
        }
    )
    validate("interferogram.v1", obj)
    return obj


def _finite_or_none(value: float | None) -> float | None:
    # NaN is how arrays say "no value"; JSON says it with null.
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def ps_update_to_dict(msg: PSUpdateMessage) -> dict[str, Any]:
    """The validated ``ps_update.v1`` object of ``msg`` (NaN displacements become null)."""
    points = None
    if msg.points is not None:
        points = [
            _drop_none(
                {
                    "pid": p.pid,
                    "longitude": float(p.longitude),
                    "latitude": float(p.latitude),
                    "displacement_mm": [_finite_or_none(v) for v in p.displacement_mm],
                    "quality": _finite_or_none(p.quality),
                }
            )
            for p in msg.points
        ]
    obj = _drop_none(
        {
            "schema": "ps_update.v1",
            "update_id": msg.update_id,
            "dataset_id": msg.dataset_id,
            "tile_id": msg.tile_id,
            "epochs": [e.isoformat() for e in msg.epochs],
            "points": points,
            "points_uri": msg.points_uri,
            "points_format": msg.points_format,
            "points_size_bytes": msg.points_size_bytes,
            "published_at": msg.published_at,
        }
    )
    validate("ps_update.v1", obj)
    return obj


def encode_interferogram(msg: InterferogramMessage) -> bytes:
    """Record value for ``msg``; ``parse_message(encode_interferogram(m)) == m``."""
    return to_bytes(interferogram_to_dict(msg))


def encode_ps_update(msg: PSUpdateMessage) -> bytes:
    """Record value for ``msg``; round-trips through :func:`parse_message` (NaN -> None)."""
    return to_bytes(ps_update_to_dict(msg))


# --------------------------------------------------------------------------- output builders


def _check_model(model_name: str, model_version: int) -> None:
    # ':' and '@' separate the parts of detection ids; keep them out of model names.
    if not _MODEL_NAME.match(model_name):
        raise ValueError(f"model name {model_name!r} must match {_MODEL_NAME.pattern}")
    if isinstance(model_version, bool) or not isinstance(model_version, int) or model_version < 1:
        raise ValueError(f"model version must be an int >= 1, got {model_version!r}")


def detection_id_unrest(product_id: str, model_name: str, model_version: int) -> str:
    """Deterministic id of the unrest detection of one product by one model version.

    >>> detection_id_unrest("124D_05291_081406_20240101_20240113", "unrest_detector", 3)
    'unrest:124D_05291_081406_20240101_20240113:unrest_detector@v3'
    """
    _check_model(model_name, model_version)
    return f"unrest:{product_id}:{model_name}@v{model_version}"


def detection_id_ps(
    dataset_id: str, tile_id: str, update_id: str, model_name: str, model_version: int
) -> str:
    """Deterministic id of the trend-change detection of one PS update by one model version.

    >>> detection_id_ps("egms-l2a-t044", "E40N20", "u-0007", "ps_trend_classifier", 1)
    'ps:egms-l2a-t044/E40N20/u-0007:ps_trend_classifier@v1'
    """
    _check_model(model_name, model_version)
    return f"ps:{dataset_id}/{tile_id}/{update_id}:{model_name}@v{model_version}"


def _timestamp(value: datetime | str | None) -> str:
    if value is None:
        value = datetime.now(UTC)
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (e.g. datetime.now(UTC))")
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def detection_unrest(
    msg: InterferogramMessage,
    frame: FrameResult | Mapping[str, Any],
    *,
    model_name: str,
    model_version: int,
    source: RecordRef,
    min_firing_tiles: int,
    produced_at: datetime | str | None = None,
    frame_bounds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Build a validated ``detection.v1`` of kind ``interferogram_unrest``.

    Parameters
    ----------
    msg : InterferogramMessage
        The scored product; its ids and dates are copied, ``event_time`` is its secondary date.
    frame : FrameScore or mapping
        The frame decision: anything with ``to_json_dict()`` (``serving.frame_scoring.FrameScore``)
        or a mapping with ``unrest``, ``unrest_probability``, ``threshold``, ``n_tiles`` and
        ``tiles`` (fired tiles, each with ``row, col, row0, col0, probability,
        valid_fraction, bounds``).
    model_name, model_version : str, int
        The served model that scored the tiles.
    source : RecordRef
        Where the interferogram message was read.
    min_firing_tiles : int
        The rule used for the decision (``FrameScore`` does not carry it).
    produced_at : datetime (tz-aware) or ISO string, optional
        Defaults to now (UTC); pass it for reproducible output.
    frame_bounds : sequence of 4 floats, optional
        left, bottom, right, top of the scored frame in the raster's CRS (the alert rules
        use it as the area when no tile fired inside a watched region).

    Returns
    -------
    dict
        Ready for :func:`to_bytes`; key it by ``msg.product_id``.
    """
    result = dict(frame.to_json_dict() if hasattr(frame, "to_json_dict") else frame)
    obj = _drop_none(
        {
            "schema": "detection.v1",
            "detection_id": detection_id_unrest(msg.product_id, model_name, model_version),
            "kind": "interferogram_unrest",
            "model": {"name": model_name, "version": model_version},
            "source": source.to_json_dict(),
            "event_time": msg.secondary_date.isoformat(),
            "produced_at": _timestamp(produced_at),
            "input_published_at": msg.published_at,
            "product_id": msg.product_id,
            "frame_id": msg.frame_id,
            "primary_date": msg.primary_date.isoformat(),
            "secondary_date": msg.secondary_date.isoformat(),
            "region_id": msg.region_id,
            "volcano_id": msg.volcano_id,
            "frame": {
                "unrest": bool(result["unrest"]),
                "unrest_probability": float(result["unrest_probability"]),
                "threshold": float(result["threshold"]),
                "n_tiles": int(result["n_tiles"]),
                "min_firing_tiles": int(min_firing_tiles),
                "tiles": [_tile_dict(t) for t in result.get("tiles", [])],
            },
        }
    )
    if frame_bounds is not None:
        obj["frame"]["bounds"] = [float(v) for v in frame_bounds]
    validate("detection.v1", obj)
    return obj


def _tile_dict(tile: Mapping[str, Any]) -> dict[str, Any]:
    # numpy scalars are not JSON; cast every field to its plain type.
    out = {k: int(tile[k]) for k in ("row", "col", "row0", "col0")}
    out["probability"] = float(tile["probability"])
    out["valid_fraction"] = float(tile["valid_fraction"])
    if tile.get("bounds") is None:
        raise ValueError("a fired tile has no bounds: score the frame with its transform")
    out["bounds"] = [float(v) for v in tile["bounds"]]
    return out


def detection_ps(
    msg: PSUpdateMessage,
    *,
    model_name: str,
    model_version: int,
    source: RecordRef,
    n_points_classified: int,
    n_points_skipped: int,
    class_counts: Mapping[str, int],
    changes: Iterable[Mapping[str, Any]],
    produced_at: datetime | str | None = None,
    check_every_change: bool = True,
) -> dict[str, Any]:
    """Build a validated ``detection.v1`` of kind ``ps_trend_change``.

    Parameters
    ----------
    msg : PSUpdateMessage
        The update whose points were classified; ``event_time`` is its last epoch.
    model_name, model_version : str, int
        The served trend classifier.
    source : RecordRef
        Where the update message was read.
    n_points_classified, n_points_skipped : int
        Points of the update given to the model, and left out (too few valid epochs).
    class_counts : mapping of str to int
        Classified points per class (``serving.signatures.TREND_CLASSES``); missing
        classes are written as 0.
    changes : iterable of mapping
        Points whose class changed, each with ``pid``, ``longitude``, ``latitude``,
        ``previous_class`` (None for a point never classified before), ``new_class`` and
        ``probability`` (of ``new_class``).
    produced_at : datetime (tz-aware) or ISO string, optional
        Defaults to now (UTC).
    check_every_change : bool
        Validate each change against the schema (the default). A caller whose changes come
        from typed arrays and the class list itself (the pipeline) passes False: the first
        change is then validated as the representative of them all, because jsonschema
        spends ~90 us per item and a first classification lists every point of a tile.

    Returns
    -------
    dict
        Ready for :func:`to_bytes`; key it by ``msg.store_key``.
    """
    counts = {c: int(class_counts.get(c, 0)) for c in TREND_CLASSES}
    counts.update({str(k): int(v) for k, v in class_counts.items()})  # unknown names: schema error
    obj = {
        "schema": "detection.v1",
        "detection_id": detection_id_ps(
            msg.dataset_id, msg.tile_id, msg.update_id, model_name, model_version
        ),
        "kind": "ps_trend_change",
        "model": {"name": model_name, "version": model_version},
        "source": source.to_json_dict(),
        "event_time": msg.epochs[-1].isoformat(),
        "produced_at": _timestamp(produced_at),
        "dataset_id": msg.dataset_id,
        "tile_id": msg.tile_id,
        "update_id": msg.update_id,
        "n_points_classified": int(n_points_classified),
        "n_points_skipped": int(n_points_skipped),
        "class_counts": counts,
        "changes": [
            {
                "pid": str(c["pid"]),
                "longitude": float(c["longitude"]),
                "latitude": float(c["latitude"]),
                "previous_class": None if c["previous_class"] is None else str(c["previous_class"]),
                "new_class": str(c["new_class"]),
                "probability": float(c["probability"]),
            }
            for c in changes
        ],
    }
    if msg.published_at is not None:
        obj["input_published_at"] = msg.published_at
    validate("detection.v1", obj if check_every_change else {**obj, "changes": obj["changes"][:1]})
    return obj


def _text_or_base64(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def dead_letter(
    record_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    reason: str,
    error: str,
    stage: str,
    failed_at: datetime | str | None = None,
) -> dict[str, Any]:
    """Build a validated ``dead_letter.v1`` for a record that could not be processed.

    Parameters
    ----------
    record_topic, partition, offset : str, int, int
        Where the original record was read; ``dead_letter_id`` is ``topic/partition/offset``,
        so dead-lettering the same record twice gives the same id.
    key, value : bytes
        The original record key (None if it had none) and value, kept verbatim: as text
        when they are UTF-8, else base64 (``key_encoding`` / ``original_encoding`` say which).
    reason : str
        Machine code, e.g. ``MessageError.reason`` / ``ProductError.reason``.
    error : str
        One line saying what is wrong and what to do (newlines are folded).
    stage : str
        Where it failed: ``decode``, ``fetch``, ``tile``, ``infer``, ``ps_load``, ...
    failed_at : datetime (tz-aware) or ISO string, optional
        Defaults to now (UTC).

    Returns
    -------
    dict
        Ready for :func:`to_bytes`; produce it with the original ``key``.
    """
    original, original_encoding = _text_or_base64(value)
    source: dict[str, Any] = {
        "topic": record_topic,
        "partition": int(partition),
        "offset": int(offset),
        "key": None,
    }
    if key is not None:
        source["key"], source["key_encoding"] = _text_or_base64(key)
    obj = {
        "schema": "dead_letter.v1",
        "dead_letter_id": RecordRef(record_topic, partition, offset).id,
        "source": source,
        "original": original,
        "original_encoding": original_encoding,
        "reason": reason,
        "error": " ".join(error.split()) or reason,
        "stage": stage,
        "failed_at": _timestamp(failed_at),
    }
    validate("dead_letter.v1", obj)
    return obj


def dead_letter_original(obj: Mapping[str, Any]) -> tuple[bytes | None, bytes]:
    """The original ``(key, value)`` bytes of a ``dead_letter.v1`` object, e.g. to replay it."""

    def decode(text: str, encoding: str) -> bytes:
        return base64.b64decode(text) if encoding == "base64" else text.encode("utf-8")

    src = obj["source"]
    key = None if src["key"] is None else decode(src["key"], src.get("key_encoding", "utf-8"))
    return key, decode(obj["original"], obj["original_encoding"])
