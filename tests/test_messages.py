"""Message contracts: round trips, every refusal reason, builders and the documented examples."""

import base64
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from pipelines.messages import (
    INLINE_MAX_CHARS,
    SCHEMA_NAMES,
    InterferogramMessage,
    MessageError,
    PSPoint,
    PSUpdateMessage,
    RasterRef,
    RecordRef,
    dead_letter,
    dead_letter_original,
    detection_id_ps,
    detection_id_unrest,
    detection_ps,
    detection_unrest,
    encode_interferogram,
    encode_ps_update,
    load_schema,
    parse_message,
    to_bytes,
    validate,
)
from pipelines.raster_io import ProductError
from serving.signatures import TREND_CLASSES

DOC = Path(__file__).resolve().parents[1] / "docs" / "messages.md"
WHEN = datetime(2024, 1, 14, 3, 21, tzinfo=UTC)


def _interferogram(**changes) -> InterferogramMessage:
    fields = {
        "product_id": "124D_05291_081406_20240101_20240113",
        "frame_id": "124D_05291_081406",
        "primary_date": date(2024, 1, 1),
        "secondary_date": date(2024, 1, 13),
        "wrapped_phase": RasterRef(uri="s3://bucket/ifg.geo.diff_pha.tif", sha256="ab" * 32),
    }
    fields.update(changes)
    return InterferogramMessage(**fields)


def _ps_update(**changes) -> PSUpdateMessage:
    fields = {
        "update_id": "u-1",
        "dataset_id": "egms-l2a-t044",
        "tile_id": "E40N20",
        "epochs": (date(2024, 1, 1), date(2024, 1, 13)),
        "points": (
            PSPoint("PS1", 14.1, 40.8, (-1.5, 2.0), 0.9),
            PSPoint("PS2", 14.2, 40.9, (None, 3.25)),
        ),
    }
    fields.update(changes)
    return PSUpdateMessage(**fields)


def _valid_interferogram_dict() -> dict:
    return json.loads(encode_interferogram(_interferogram()))


def _reason(raw: bytes | dict) -> str:
    if isinstance(raw, dict):
        raw = json.dumps(raw).encode()
    with pytest.raises(MessageError) as info:
        parse_message(raw)
    assert "\n" not in str(info.value)
    return info.value.reason


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_is_valid_draft_2020_12_with_a_const_name(name):
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"] == {"const": name}
    assert "schema" in schema["required"]


def test_detection_schema_lists_the_served_trend_classes_in_order():
    schema = load_schema("detection.v1")
    assert tuple(schema["$defs"]["trend_class"]["enum"]) == TREND_CLASSES


def _doc_examples() -> list[dict]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [json.loads(b) for b in blocks]


def test_docs_show_an_example_of_every_schema_and_each_validates():
    examples = _doc_examples()
    assert {e["schema"] for e in examples} == set(SCHEMA_NAMES)
    kinds = {e["kind"] for e in examples if e["schema"] == "detection.v1"}
    assert kinds == {"interferogram_unrest", "ps_trend_change"}
    for example in examples:
        validate(example["schema"], example)
        if example["schema"] in ("interferogram.v1", "ps_update.v1"):
            parse_message(json.dumps(example).encode())


def test_documented_dead_letter_reproduces_what_parse_message_says():
    example = next(e for e in _doc_examples() if e["schema"] == "dead_letter.v1")
    with pytest.raises(MessageError) as info:
        parse_message(example["original"].encode())
    assert info.value.reason == example["reason"]
    assert str(info.value) == example["error"]


# --------------------------------------------------------------------------- round trips


def test_interferogram_round_trip_with_every_optional_field():
    tif = b"II*\x00" + bytes(range(256))
    msg = _interferogram(
        coherence=RasterRef(inline=tif, format="geotiff"),
        unwrapped=RasterRef(uri="file:///data/ifg.geo.unw.tif"),
        region_id="campi-flegrei",
        volcano_id="211010",
        published_at="2024-01-14T03:20:00Z",
    )
    raw = encode_interferogram(msg)
    assert parse_message(raw) == msg
    assert json.loads(raw)["coherence"]["inline"] == base64.b64encode(tif).decode()


def test_interferogram_round_trip_leaves_out_absent_optional_fields():
    raw = encode_interferogram(_interferogram())
    assert set(json.loads(raw)) == {
        "schema", "product_id", "frame_id", "primary_date", "secondary_date", "wrapped_phase"
    }
    assert parse_message(raw) == _interferogram()


def test_ps_update_round_trip_inline_and_by_uri():
    inline = _ps_update(published_at="2024-01-14T03:25:00+01:00")
    assert parse_message(encode_ps_update(inline)) == inline
    by_uri = _ps_update(points=None, points_uri="https://h/x.parquet", points_format="parquet")
    assert parse_message(encode_ps_update(by_uri)) == by_uri
    assert by_uri.store_key == "egms-l2a-t044/E40N20"
    assert by_uri.event_time == date(2024, 1, 13)


def test_ps_update_encodes_nan_displacement_as_null():
    msg = _ps_update(points=(PSPoint("PS1", 14.1, 40.8, (float("nan"), 1.0), float("nan")),))
    obj = json.loads(encode_ps_update(msg))
    assert obj["points"][0]["displacement_mm"] == [None, 1.0]
    assert "quality" not in obj["points"][0]
    assert parse_message(encode_ps_update(msg)).points[0].displacement_mm == (None, 1.0)


def test_unknown_fields_are_ignored_so_optional_additions_stay_v1():
    obj = _valid_interferogram_dict() | {"orbit_direction": "descending"}
    assert parse_message(json.dumps(obj).encode()) == _interferogram()


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe not utf-8", b"{not json", b"[1, 2]", b'"text"', b'{"x": NaN}', b'{"x": 1e400}'],
)
def test_undecodable_values_are_not_json(raw):
    assert _reason(raw) == "not_json"


@pytest.mark.parametrize("name", [None, "interferogram.v2", "detection.v1", ["interferogram.v1"]])
def test_missing_unknown_or_output_schema_names_are_unknown_schema(name):
    obj = _valid_interferogram_dict()
    obj.pop("schema")
    if name is not None:
        obj["schema"] = name
    assert _reason(obj) == "unknown_schema"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"product_id": ""}, "$.product_id"),
        ({"frame_id": 7}, "$.frame_id"),
        ({"primary_date": "2024-02-30"}, "$.primary_date"),
        ({"primary_date": "20240101"}, "$.primary_date"),
        ({"wrapped_phase": {}}, "$.wrapped_phase"),
        ({"wrapped_phase": {"uri": "/a.tif", "inline": "AAAA"}}, "$.wrapped_phase"),
        ({"wrapped_phase": {"uri": "relative/a.tif"}}, "$.wrapped_phase.uri"),
        ({"wrapped_phase": {"uri": "/a.tif", "format": "png"}}, "$.wrapped_phase.format"),
        ({"wrapped_phase": {"uri": "/a.tif", "sha256": "xyz"}}, "$.wrapped_phase.sha256"),
        ({"wrapped_phase": {"inline": "not base64!"}}, "wrapped_phase.inline"),
        ({"published_at": "2024-01-14 03:20"}, "$.published_at"),
    ],
)
def test_interferogram_schema_errors_name_the_field(change, where):
    obj = _valid_interferogram_dict() | change
    with pytest.raises(MessageError) as info:
        parse_message(json.dumps(obj).encode())
    assert info.value.reason == "schema_error"
    assert where in str(info.value)


def test_missing_required_field_is_named():
    obj = _valid_interferogram_dict()
    del obj["product_id"]
    with pytest.raises(MessageError, match="'product_id' is a required property"):
        parse_message(json.dumps(obj).encode())


def test_error_text_is_short_and_one_line_even_for_huge_values():
    obj = _valid_interferogram_dict() | {"frame_id": ["x" * 10_000]}
    with pytest.raises(MessageError) as info:
        parse_message(json.dumps(obj).encode())
    assert len(str(info.value)) <= 300


@pytest.mark.parametrize(
    ("primary", "secondary"), [("2024-01-13", "2024-01-01"), ("2024-01-13", "2024-01-13")]
)
def test_primary_not_before_secondary_is_bad_dates(primary, secondary):
    obj = _valid_interferogram_dict() | {"primary_date": primary, "secondary_date": secondary}
    assert _reason(obj) == "bad_dates"


def test_inline_raster_over_the_limit_is_inline_too_large():
    text = base64.b64encode(b"\0" * (INLINE_MAX_CHARS // 4 * 3 + 3)).decode()
    assert len(text) > INLINE_MAX_CHARS
    obj = _valid_interferogram_dict() | {"wrapped_phase": {"inline": text}}
    assert _reason(obj) == "inline_too_large"


def _ps_dict(**changes) -> dict:
    return json.loads(encode_ps_update(_ps_update())) | changes


def test_ps_update_refusals():
    assert _reason(_ps_dict(epochs=["2024-01-13", "2024-01-01"])) == "bad_dates"
    assert _reason(_ps_dict(epochs=[])) == "schema_error"
    assert _reason(_ps_dict(epochs=["2024-01-01", "2024-01-01"])) == "schema_error"
    short = _ps_dict()
    short["points"][1]["displacement_mm"] = [1.0]
    assert _reason(short) == "schema_error"
    assert _reason(_ps_dict(points_uri="/p.csv", points_format="egms_csv")) == "schema_error"
    no_points = _ps_dict()
    del no_points["points"]
    assert _reason(no_points) == "schema_error"
    assert _reason(no_points | {"points_uri": "/p.csv"}) == "schema_error"  # no format
    assert _reason(no_points | {"points_uri": "/p.csv", "points_format": "xlsx"}) == "schema_error"
    far = _ps_dict()
    far["points"][0]["latitude"] = 91
    assert _reason(far) == "schema_error"


def test_message_error_is_caught_as_product_error():
    with pytest.raises(ProductError):
        parse_message(b"{")


# --------------------------------------------------------------------------- builders


def test_detection_ids_are_deterministic_and_readable():
    assert detection_id_unrest("P1", "unrest_detector", 3) == "unrest:P1:unrest_detector@v3"
    assert detection_id_unrest("P1", "unrest_detector", 3) == detection_id_unrest(
        "P1", "unrest_detector", 3
    )
    assert detection_id_unrest("P1", "unrest_detector", 4) != detection_id_unrest(
        "P1", "unrest_detector", 3
    )
    assert detection_id_ps("d", "t", "u", "ps_trend_classifier", 1) == (
        "ps:d/t/u:ps_trend_classifier@v1"
    )
    with pytest.raises(ValueError):
        detection_id_unrest("P1", "bad:name", 1)
    with pytest.raises(ValueError):
        detection_id_unrest("P1", "unrest_detector", 0)


class _Frame:
    """Stands in for serving.frame_scoring.FrameScore (anything with to_json_dict)."""

    def to_json_dict(self) -> dict:
        return {
            "unrest_probability": 0.9,
            "unrest": True,
            "n_tiles": 6,
            "threshold": 0.5,
            "tiles": [{"row": 0, "col": 1, "row0": 0, "col0": 168, "probability": 0.9,
                       "valid_fraction": 1.0, "bounds": (14.1, 40.5, 14.3, 40.7)}],
        }


def test_detection_unrest_validates_and_is_reproducible():
    msg = _interferogram(region_id="r1")
    source = RecordRef("insar.interferograms", 2, 1187)
    args = {"model_name": "unrest_detector", "model_version": 3, "source": source,
            "min_firing_tiles": 1, "produced_at": WHEN}
    det = detection_unrest(msg, _Frame(), **args)
    assert det == detection_unrest(msg, _Frame().to_json_dict(), **args)
    assert det["detection_id"] == detection_id_unrest(msg.product_id, "unrest_detector", 3)
    assert det["event_time"] == "2024-01-13"
    assert det["produced_at"] == "2024-01-14T03:21:00.000Z"
    assert det["source"] == {"topic": "insar.interferograms", "partition": 2, "offset": 1187}
    assert det["region_id"] == "r1" and "volcano_id" not in det
    assert det["frame"]["tiles"][0]["bounds"] == [14.1, 40.5, 14.3, 40.7]
    validate("detection.v1", json.loads(to_bytes(det)))


def test_detection_unrest_refuses_tiles_without_bounds():
    frame = _Frame().to_json_dict()
    del frame["tiles"][0]["bounds"]
    with pytest.raises(ValueError, match="bounds"):
        detection_unrest(_interferogram(), frame, model_name="m", model_version=1,
                         source=RecordRef("t", 0, 0), min_firing_tiles=1)


def test_detection_ps_fills_every_class_and_validates():
    det = detection_ps(
        _ps_update(), model_name="ps_trend_classifier", model_version=1,
        source=RecordRef("insar.ps-updates", 0, 52), n_points_classified=2,
        n_points_skipped=0, class_counts={"stable": 1, "linear": 1},
        changes=[{"pid": "PS1", "longitude": 14.1, "latitude": 40.8, "previous_class": None,
                  "new_class": "linear", "probability": 0.8}],
        produced_at="2024-01-14T03:26:00Z",
    )
    assert det["class_counts"] == {"stable": 1, "linear": 1, "quadratic": 0, "bilinear": 0,
                                   "pue": 0}
    assert det["event_time"] == "2024-01-13"
    assert det["detection_id"] == "ps:egms-l2a-t044/E40N20/u-1:ps_trend_classifier@v1"
    with pytest.raises(MessageError, match="class_counts"):
        detection_ps(
            _ps_update(), model_name="m", model_version=1, source=RecordRef("t", 0, 0),
            n_points_classified=1, n_points_skipped=0, class_counts={"wavy": 1}, changes=[],
        )


def test_dead_letter_keeps_text_and_binary_originals():
    text = dead_letter("insar.interferograms", 2, 1190, b"124D", b'{"a":1}', "schema_error",
                       "bad\nthing", "decode", failed_at=WHEN)
    assert text["dead_letter_id"] == "insar.interferograms/2/1190"
    assert text["original"] == '{"a":1}' and text["original_encoding"] == "utf-8"
    assert text["source"]["key"] == "124D" and text["source"]["key_encoding"] == "utf-8"
    assert text["error"] == "bad thing"
    assert dead_letter_original(text) == (b"124D", b'{"a":1}')

    binary = dead_letter("insar.ps-updates", 0, 7, b"\xff\x00", b"\x89HDF\xff", "not_json",
                         "not UTF-8", "decode")
    assert binary["original_encoding"] == "base64"
    assert binary["source"]["key_encoding"] == "base64"
    assert dead_letter_original(binary) == (b"\xff\x00", b"\x89HDF\xff")

    no_key = dead_letter("t", 0, 1, None, b"", "not_json", "empty", "decode")
    assert no_key["source"]["key"] is None and "key_encoding" not in no_key["source"]
    validate("dead_letter.v1", json.loads(to_bytes(no_key)))


def test_dead_letter_refuses_a_free_text_reason():
    with pytest.raises(MessageError):
        dead_letter("t", 0, 1, None, b"x", "Not JSON!", "oops", "decode")


def test_to_bytes_is_compact_utf8_and_refuses_nan():
    assert to_bytes({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()
    with pytest.raises(ValueError):
        to_bytes({"a": float("nan")})


def test_detection_ps_checks_every_change_unless_the_caller_vouches_for_them():
    good = {"pid": "PS1", "longitude": 14.1, "latitude": 40.8, "previous_class": None,
            "new_class": "linear", "probability": 0.8}
    bad = {**good, "pid": "PS2", "new_class": "wavy"}
    args = {"model_name": "m", "model_version": 1, "source": RecordRef("t", 0, 0),
            "n_points_classified": 2, "n_points_skipped": 0, "class_counts": {"linear": 2}}
    with pytest.raises(MessageError, match="changes"):
        detection_ps(_ps_update(), changes=[good, bad], **args)
    det = detection_ps(_ps_update(), changes=[good, bad], check_every_change=False, **args)
    assert [c["pid"] for c in det["changes"]] == ["PS1", "PS2"]
