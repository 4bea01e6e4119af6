"""The bad-input corpus (tests/data/bad) at the parse/fetch layer, plus the fetch limits.

Every case of ``tests/data/bad/manifest.json`` goes through what the pipeline's decode and
fetch stages do — :func:`parse_message`, then :func:`load_wrapped_phase` and tiling, or
:func:`load_ps_points` and the PS-store merge — with the input limits of the configuration
(``products.allowed_roots`` set to the test's product directory) and must end with the reason
the manifest names, or succeed where it expects a detection. No broker: the daemon runs the
same corpus in ``tests/reliability/test_bad_input_daemon.py``.

The helpers here (:func:`materialize_corpus`, :func:`fetch_layer_outcome`) are shared with
that test.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine

from monitor.config import MonitorConfig, ProductsConfig
from pipelines.context import PipelineContext
from pipelines.messages import (
    INLINE_MAX_CHARS,
    InterferogramMessage,
    PSUpdateMessage,
    RasterRef,
    encode_interferogram,
    encode_ps_update,
    parse_message,
)
from pipelines.product_fetch import (
    DEFAULT_ALLOWED_SCHEMES,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    FetchPolicy,
    load_ps_points,
    load_wrapped_phase,
    local_file,
    no_valid_tiles_error,
)
from pipelines.raster_io import ProductError, write_wrapped_phase_geotiff

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "bad"
MANIFEST: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text("utf-8"))
CASES: list[dict[str, Any]] = MANIFEST["cases"]
TOPICS = ("interferogram", "ps_update")
OUTCOMES = ("dead_letter", "detection", "deduplicated")
GEOGRAPHIC = Affine(0.001, 0, 14.1, 0, -0.001, 40.9)
UTM = Affine(30.0, 0, 500000.0, 0, -30.0, 4530000.0)
BIG_BASE64 = b"A" * (INLINE_MAX_CHARS + 4)


# --------------------------------------------------------------------------- corpus helpers


def _phase(seed: int, shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3.1, 3.1, shape).astype(np.float32)


def _write_raw(path: Path, data: np.ndarray, crs: str | None, dtype: str) -> None:
    import rasterio

    data = data if data.ndim == 3 else data[None]
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
        count=data.shape[0], dtype=dtype, crs=crs, transform=GEOGRAPHIC,
    ) as dst:
        dst.write(data.astype(dtype))


def _generate(fixture: dict[str, Any], data_dir: Path) -> None:
    """Write one entry of the manifest's ``generated`` list (see its ``why``)."""
    base = data_dir.parent if fixture.get("outside_root") else data_dir
    path = base / fixture["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = fixture["kind"]
    shape = tuple(fixture.get("shape", (300, 300)))
    if kind == "phase":
        crs = fixture.get("crs", "EPSG:4326")
        transform = GEOGRAPHIC if crs == "EPSG:4326" else UTM
        write_wrapped_phase_geotiff(path, _phase(fixture["seed"], shape), transform, crs=crs)
    elif kind == "all_nan":
        write_wrapped_phase_geotiff(path, np.full(shape, np.nan, np.float32), GEOGRAPHIC)
    elif kind == "mostly_nodata":
        phase = np.full(shape, np.nan, np.float32)
        phase.reshape(-1)[::100] = 0.5  # 1% finite, spread over every tile
        write_wrapped_phase_geotiff(path, phase, GEOGRAPHIC)
    elif kind == "no_crs":
        _write_raw(path, _phase(7, shape), None, "float32")
    elif kind == "int16":
        _write_raw(path, (_phase(8, shape) * 1000).round(), "EPSG:4326", "int16")
    elif kind == "degrees":
        write_wrapped_phase_geotiff(path, np.degrees(_phase(9, shape)), GEOGRAPHIC)
    elif kind == "two_bands":
        _write_raw(path, np.stack([_phase(10, shape), _phase(11, shape)]), "EPSG:4326", "float32")
    elif kind == "truncate":
        source = (data_dir / fixture["source"]).read_bytes()
        keep = fixture["keep"]
        path.write_bytes(source[: int(len(source) * keep) if isinstance(keep, float) else keep])
    elif kind == "symlink":
        target = Path(fixture["target"])
        if not target.is_absolute():
            target = (data_dir.parent if fixture.get("target_outside_root") else data_dir) / target
        os.symlink(target, path)
    else:
        raise ValueError(f"unknown fixture kind {kind!r}")


def materialize_corpus(data_dir: Path) -> dict[str, bytes]:
    """Write the corpus's product files under ``data_dir``; each case's record value.

    ``files/`` (small committed bad files) is copied, the ``generated`` fixtures are written
    (rasters, truncated copies, symlinks; a few next to ``data_dir``, outside it), and the
    placeholders of the messages are expanded.

    Returns
    -------
    dict of str to bytes
        Case name -> the exact bytes to publish.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(CORPUS / "files", data_dir / "files", dirs_exist_ok=True)
    for fixture in MANIFEST["generated"]:
        _generate(fixture, data_dir)
    values = {}
    for case in CASES:
        raw = (CORPUS / case["file"]).read_bytes()
        raw = raw.replace(b"{{DATA}}", str(data_dir).encode()).replace(
            b"{{BIG_BASE64}}", BIG_BASE64
        )
        values[case["name"]] = raw
    return values


def corpus_context(data_dir: Path, **products: Any) -> PipelineContext:
    """The pipeline context of a default configuration whose only allowed root is ``data_dir``."""
    section = {"allowed_roots": [str(data_dir.resolve())], "fetch_backoff_s": 0.01, **products}
    return PipelineContext.from_config(MonitorConfig.model_validate({"products": section}))


@dataclass(frozen=True)
class Outcome:
    """What the decode + fetch stages make of one record value."""

    outcome: str  # "dead_letter" | "detection"
    reason: str | None = None
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _interferogram_outcome(msg: InterferogramMessage, ctx: PipelineContext) -> Outcome:
    from pipelines.tiling import tile_frame

    try:
        raster = load_wrapped_phase(
            msg.wrapped_phase,
            allowed_crs=list(ctx.allowed_crs),
            phase_tolerance_rad=ctx.phase_tolerance_rad,
            max_bytes=ctx.max_raster_bytes,
            max_pixels=ctx.max_raster_pixels,
            policy=ctx.fetch_policy(),
        )
        tiles = tile_frame(
            raster.phase, overlap=ctx.tile_overlap, min_valid_fraction=ctx.min_valid_fraction,
            transform=raster.transform,
        )
    except ProductError as e:
        return Outcome("dead_letter", e.reason, str(e))
    except ValueError as e:
        return Outcome("dead_letter", "untileable", str(e))
    if not tiles:
        error = no_valid_tiles_error(msg.wrapped_phase.describe(), ctx.min_valid_fraction)
        return Outcome("dead_letter", error.reason, str(error))
    return Outcome("detection", details={"kind": "interferogram_unrest"})


def _ps_outcome(msg: Any, ctx: PipelineContext) -> Outcome:
    from pipelines.ps_store import merge_epochs
    from pipelines.series_packing import pack_series

    try:
        batch = load_ps_points(msg, max_bytes=ctx.max_raster_bytes, policy=ctx.fetch_policy())
        series, rows = merge_epochs(
            None, msg.dataset_id, msg.tile_id, batch.pid, batch.longitude, batch.latitude,
            batch.dates, batch.displacement_mm, batch.quality,
        )
    except ProductError as e:
        return Outcome("dead_letter", e.reason, str(e))
    except ValueError as e:
        return Outcome("dead_letter", "bad_points", str(e))
    keep, _, _ = pack_series(series.displacement_mm[rows], series.time_days(), ctx.min_epochs)
    return Outcome(
        "detection",
        details={
            "kind": "ps_trend_change",
            "n_points_classified": int(keep.sum()),
            "n_points_skipped": int(len(rows) - keep.sum()),
        },
    )


def fetch_layer_outcome(raw: bytes, ctx: PipelineContext) -> Outcome:
    """Decode ``raw`` and load what it refers to, as the pipeline's first stages do."""
    try:
        msg = parse_message(raw)
    except ProductError as e:
        return Outcome("dead_letter", e.reason, str(e))
    if isinstance(msg, InterferogramMessage):
        return _interferogram_outcome(msg, ctx)
    return _ps_outcome(msg, ctx)


# --------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], PipelineContext]:
    data_dir = tmp_path_factory.mktemp("bad-corpus") / "data"
    return materialize_corpus(data_dir), corpus_context(data_dir)


def test_manifest_lists_at_least_fifty_well_formed_cases_whose_files_exist():
    assert len(CASES) >= 50
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in CASES:
        assert set(case) >= {"name", "file", "topic", "expect", "why"}, case["name"]
        assert (CORPUS / case["file"]).is_file(), case["file"]
        assert case["topic"] in TOPICS, case["name"]
        assert case["expect"]["outcome"] in OUTCOMES, case["name"]
        assert case["why"].strip(), case["name"]
        if case["expect"]["outcome"] == "dead_letter":
            assert re.fullmatch(r"[a-z][a-z0-9_]*", case["expect"]["reason"]), case["name"]
        if case["expect"]["outcome"] == "deduplicated":
            first = case["expect"]["duplicate_of"]
            assert first in names[: names.index(case["name"])], "duplicates follow the first"
            assert (CORPUS / case["file"]).read_bytes() == (
                CORPUS / next(c for c in CASES if c["name"] == first)["file"]
            ).read_bytes()


def test_corpus_covers_both_topics_and_the_new_reasons():
    reasons = {c["expect"].get("reason") for c in CASES}
    assert {c["topic"] for c in CASES} == set(TOPICS)
    assert {"forbidden_uri", "too_large", "no_valid_pixels", "unreadable", "unreachable"} <= reasons
    assert sum(c["expect"]["outcome"] == "detection" for c in CASES) >= 5


def test_every_expected_reason_is_documented_in_the_dead_letter_reasons_table():
    docs = (REPO / "docs" / "messages.md").read_text("utf-8")
    table = docs[docs.index("## `dead_letter.v1`") : docs.index("## `hotspot.v1`")]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))
    expected = {c["expect"]["reason"] for c in CASES if c["expect"]["outcome"] == "dead_letter"}
    assert expected <= documented, f"undocumented reasons: {sorted(expected - documented)}"


def test_committed_decompression_bomb_is_small_but_claims_ten_billion_pixels():
    import rasterio

    bomb = CORPUS / "files" / "bomb_1e10_pixels.tif"
    assert bomb.stat().st_size < 50 * 1024
    with rasterio.open(bomb) as src:
        assert src.width * src.height == 10**10


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_gets_its_expected_outcome_at_the_parse_and_fetch_layer(case, corpus):
    values, ctx = corpus
    got = fetch_layer_outcome(values[case["name"]], ctx)
    expect = case["expect"]
    if expect["outcome"] == "dead_letter":
        assert (got.outcome, got.reason) == ("dead_letter", expect["reason"]), got.error
        assert got.error.strip() and "\n" not in got.error
    else:  # a duplicate is only dropped by the publishing ledger: it loads like the first
        assert got.outcome == "detection", f"{got.reason}: {got.error}"
        for key, value in expect.items():
            if key.startswith("n_points") or key == "kind":
                assert got.details[key] == value, key


def test_a_symlink_is_judged_by_where_it_resolves_to_not_by_its_content(corpus):
    values, _ = corpus
    link = Path(json.loads(values["ifg_symlink_to_sibling_dir"])["wrapped_phase"]["uri"])
    target = link.resolve()
    assert target != link and target.is_file(), "the link points at a valid raster"
    # With the target's directory allowed, the very same message scores.
    lenient = corpus_context(target.parent)
    assert fetch_layer_outcome(values["ifg_symlink_to_sibling_dir"], lenient).outcome == (
        "detection"
    )


# --------------------------------------------------------------------------- limits and config


def test_products_config_defaults_keep_the_embedded_demo_working():
    products = ProductsConfig()
    assert products.allowed_uri_schemes == list(DEFAULT_ALLOWED_SCHEMES)
    assert DEFAULT_ALLOWED_SCHEMES == ("file", "http", "https", "s3")
    assert products.allowed_roots == []
    assert products.max_raster_bytes == DEFAULT_MAX_BYTES == 2 * 1024**3
    assert products.max_raster_pixels == DEFAULT_MAX_PIXELS == 200_000_000
    assert (products.fetch_retries, products.fetch_backoff_s) == (2, 1.0)
    ctx = PipelineContext.from_config(MonitorConfig())
    assert ctx.fetch_policy() == FetchPolicy(
        allowed_schemes=("file", "http", "https", "s3"), allowed_roots=(), retries=2,
        backoff_s=1.0,
    )


def test_config_schemes_are_compared_case_insensitively():
    products = ProductsConfig(allowed_uri_schemes=["FILE", "https://"])
    assert products.allowed_uri_schemes == ["file", "https"]


def test_declared_size_is_refused_before_the_file_is_even_looked_for(tmp_path):
    ref = RasterRef(uri=(tmp_path / "absent.tif").as_uri(), size_bytes=10 * 1024**3)
    with pytest.raises(ProductError) as info:
        load_wrapped_phase(ref)
    assert info.value.reason == "too_large" and "declares" in str(info.value)


def test_pixel_limit_applies_before_pixels_are_read(tmp_path):
    path = write_wrapped_phase_geotiff(tmp_path / "p.tif", _phase(1, (100, 100)), GEOGRAPHIC)
    ref = RasterRef(uri=path.as_uri())
    with pytest.raises(ProductError) as info:
        load_wrapped_phase(ref, max_pixels=9_999)
    assert info.value.reason == "too_large" and "100 x 100" in str(info.value)
    assert load_wrapped_phase(ref, max_pixels=10_000).phase.shape == (100, 100)


def test_allowed_roots_accept_paths_inside_them_whatever_the_spelling(tmp_path):
    root = tmp_path / "store"
    path = write_wrapped_phase_geotiff(root / "a" / "p.tif", _phase(2, (80, 80)), GEOGRAPHIC)
    policy = FetchPolicy(allowed_roots=(str(root),))
    for uri in (str(path), path.as_uri(), f"file://{root}/a/../a/./p.tif"):
        with local_file(uri, policy=policy) as local:
            assert local.read_bytes() == path.read_bytes()
    sibling = tmp_path / "store-2" / "p.tif"  # shares a prefix with the root, is not inside
    sibling.parent.mkdir()
    sibling.write_bytes(b"x")
    with pytest.raises(ProductError) as info, local_file(str(sibling), policy=policy):
        pass
    assert info.value.reason == "forbidden_uri"


class _Flaky(http.server.BaseHTTPRequestHandler):
    """``/flaky`` answers its first ``fail_first`` downloads (GET) with 503, ``/down`` every
    request, ``/gone`` is 404, ``/endless`` streams without a Content-Length; others serve
    ``body``."""

    body = b"II*\x00" + bytes(1000)
    fail_first = 2
    calls: dict[str, int]

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _answer(self, send_body: bool) -> None:
        if send_body:
            self.calls[self.path] = self.calls.get(self.path, 0) + 1
        if self.path == "/down" or (
            self.path == "/flaky" and send_body and self.calls[self.path] <= self.fail_first
        ):
            self.send_error(503)
        elif self.path == "/gone":
            self.send_error(404)
        elif self.path == "/endless":
            self.send_response(200)
            self.end_headers()
            if send_body:
                for _ in range(64):
                    self.wfile.write(bytes(64 * 1024))
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            if send_body:
                self.wfile.write(self.body)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)


@pytest.fixture()
def flaky_server() -> Iterator[tuple[str, dict[str, int]]]:
    calls: dict[str, int] = {}
    handler = type("Handler", (_Flaky,), {"calls": calls})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=functools.partial(server.serve_forever, 0.05), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_transient_server_errors_are_retried_until_the_fetch_succeeds(flaky_server):
    base, calls = flaky_server
    policy = FetchPolicy(retries=2, backoff_s=0.01)
    with local_file(f"{base}/flaky", policy=policy) as path:
        assert path.read_bytes() == _Flaky.body
    assert calls["/flaky"] == 3


def test_without_retries_a_transient_error_is_unreachable_at_once(flaky_server):
    base, calls = flaky_server
    with pytest.raises(ProductError) as info, local_file(f"{base}/flaky", policy=FetchPolicy()):
        pass
    assert info.value.reason == "unreachable" and calls["/flaky"] == 1


def test_retries_give_up_as_unreachable_after_backing_off(flaky_server):
    base, calls = flaky_server
    policy = FetchPolicy(retries=2, backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(ProductError) as info, local_file(f"{base}/down", policy=policy):
        pass
    assert info.value.reason == "unreachable"
    assert "503" in str(info.value) and "gave up after 3 attempts" in str(info.value)
    assert time.monotonic() - started >= 0.05 + 0.10  # backoff doubles
    assert calls["/down"] == 3


def test_not_found_is_not_retried(flaky_server):
    base, calls = flaky_server
    policy = FetchPolicy(retries=5, backoff_s=10.0)
    started = time.monotonic()
    with pytest.raises(ProductError) as info, local_file(f"{base}/gone", policy=policy):
        pass
    assert info.value.reason == "not_found"
    assert time.monotonic() - started < 5.0 and calls.get("/gone", 0) <= 1


def test_downloads_without_a_stated_size_stop_at_the_byte_limit(flaky_server):
    base, _ = flaky_server
    with pytest.raises(ProductError) as info, local_file(f"{base}/endless", max_bytes=100_000):
        pass
    assert info.value.reason == "too_large"


def test_declared_sizes_round_trip_through_the_contracts():
    ifg = InterferogramMessage(
        product_id="p", frame_id="f", primary_date=date(2024, 1, 1),
        secondary_date=date(2024, 1, 13),
        wrapped_phase=RasterRef(uri="s3://bucket/p.tif", size_bytes=123_456),
    )
    assert parse_message(encode_interferogram(ifg)) == ifg
    ps = PSUpdateMessage(
        update_id="u", dataset_id="d", tile_id="t", epochs=(date(2024, 1, 1),),
        points_uri="s3://bucket/u.parquet", points_format="parquet", points_size_bytes=99,
    )
    assert parse_message(encode_ps_update(ps)) == ps
    without_uri = json.loads(encode_ps_update(ps))
    del without_uri["points_uri"], without_uri["points_format"]
    without_uri["points"] = [
        {"pid": "a", "longitude": 1.0, "latitude": 2.0, "displacement_mm": [0.0]}
    ]
    with pytest.raises(ProductError) as info:
        parse_message(json.dumps(without_uri).encode())
    assert info.value.reason == "schema_error"  # a declared size needs the file it describes
