"""Fetching rasters and PS points by reference: local, file://, inline, http, fsspec; refusals."""

import functools
import hashlib
import http.server
import importlib.util
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from affine import Affine

from pipelines.egms_csv import write_egms_csv
from pipelines.messages import PSPoint, PSUpdateMessage, RasterRef
from pipelines.product_fetch import (
    PSBatch,
    fetch_bytes,
    load_ps_points,
    load_wrapped_phase,
    local_file,
    local_raster,
    sniff_format,
    write_ps_parquet,
)
from pipelines.raster_io import (
    ProductError,
    write_wrapped_phase_geotiff,
    write_wrapped_phase_netcdf,
)

TRANSFORM = Affine(0.001, 0, 14.1, 0, -0.001, 40.9)
EPOCHS = tuple(date(2024, 1, 1) + timedelta(days=12 * i) for i in range(4))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on a free local port: (directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def phase() -> np.ndarray:
    values = np.random.default_rng(3).uniform(-np.pi, np.pi, (40, 60)).astype(np.float32)
    values[:3, :5] = np.nan
    return values


@pytest.fixture()
def tif(tmp_path: Path, phase: np.ndarray) -> Path:
    return write_wrapped_phase_geotiff(tmp_path / "ifg.geo.diff_pha.tif", phase, TRANSFORM)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reason(ref: RasterRef, **kwargs) -> ProductError:
    with pytest.raises(ProductError) as info, local_raster(ref, **kwargs):
        pass
    return info.value


# --------------------------------------------------------------------------- rasters


def test_local_path_and_file_url_are_used_in_place(tif: Path):
    with local_raster(RasterRef(uri=str(tif), sha256=_sha(tif))) as path:
        assert path == tif
    with local_raster(RasterRef(uri=tif.as_uri())) as path:
        assert path == tif


def test_file_url_with_escaped_characters(tmp_path: Path, phase):
    spaced = write_wrapped_phase_geotiff(tmp_path / "a b%.tif", phase, TRANSFORM)
    assert "%20" in spaced.as_uri()
    with local_raster(RasterRef(uri=spaced.as_uri())) as path:
        assert path == spaced


def test_inline_geotiff_goes_to_a_temporary_tif_that_is_removed(tif: Path, phase):
    data = tif.read_bytes()
    with local_raster(RasterRef(inline=data)) as path:
        assert path.suffix == ".tif" and path.read_bytes() == data
    assert not path.exists()
    raster = load_wrapped_phase(RasterRef(inline=data, sha256=_sha(tif)))
    np.testing.assert_allclose(raster.phase, phase, equal_nan=True)
    assert raster.crs == "EPSG:4326"


def test_netcdf_is_recognised_by_magic_bytes_inline_and_by_format_locally(tmp_path, phase):
    nc = write_wrapped_phase_netcdf(tmp_path / "ifg.nc", phase, TRANSFORM)
    data = nc.read_bytes()
    assert sniff_format(data[:8]) == "netcdf"
    with local_raster(RasterRef(inline=data)) as path:
        assert path.suffix == ".nc"
    np.testing.assert_allclose(
        load_wrapped_phase(RasterRef(inline=data)).phase, phase, equal_nan=True
    )
    # A NetCDF file without a NetCDF suffix is linked (not copied) under a .nc name.
    odd = nc.rename(tmp_path / "ifg.bin")
    for ref in (RasterRef(uri=str(odd)), RasterRef(uri=str(odd), format="netcdf")):
        with local_raster(ref) as path:
            assert path.suffix == ".nc" and path.resolve() == odd.resolve()
        np.testing.assert_allclose(load_wrapped_phase(ref).phase, phase, equal_nan=True)


def test_sniff_format_knows_tiff_bigtiff_and_netcdf_magic():
    assert sniff_format(b"II*\x00....") == "geotiff"
    assert sniff_format(b"MM\x00*....") == "geotiff"
    assert sniff_format(b"II+\x00....") == "geotiff"
    assert sniff_format(b"CDF\x01....") == "netcdf"
    assert sniff_format(b"PK\x03\x04") is None


def test_http_download_reads_the_same_raster(http_dir, tif: Path, phase):
    root, base = http_dir
    (root / "f").mkdir()
    (root / "f" / tif.name).write_bytes(tif.read_bytes())
    ref = RasterRef(uri=f"{base}/f/{tif.name}", sha256=_sha(tif))
    with local_raster(ref) as path:
        assert path.name == tif.name and path != tif
    assert not path.exists()
    np.testing.assert_allclose(load_wrapped_phase(ref).phase, phase, equal_nan=True)
    assert fetch_bytes(ref) == tif.read_bytes()


def test_http_missing_file_is_not_found_and_a_closed_port_is_unreachable(http_dir):
    _, base = http_dir
    assert _reason(RasterRef(uri=f"{base}/missing.tif")).reason == "not_found"
    # Port 9 (discard) on localhost: nothing listens there on a test machine.
    assert _reason(RasterRef(uri="http://127.0.0.1:9/x.tif")).reason == "unreachable"


def test_missing_local_file_is_not_found(tmp_path: Path):
    error = _reason(RasterRef(uri=str(tmp_path / "missing.tif")))
    assert error.reason == "not_found" and "missing.tif" in str(error)
    assert _reason(RasterRef(uri=(tmp_path / "gone.tif").as_uri())).reason == "not_found"


def test_checksum_mismatch_for_local_inline_and_remote(tif: Path, http_dir):
    wrong = "0" * 64
    assert _reason(RasterRef(uri=str(tif), sha256=wrong)).reason == "checksum_mismatch"
    inline = RasterRef(inline=tif.read_bytes(), sha256=wrong)
    assert _reason(inline).reason == "checksum_mismatch"
    with pytest.raises(ProductError, match="sha256") as info:
        fetch_bytes(inline)
    assert info.value.reason == "checksum_mismatch"
    root, base = http_dir
    (root / tif.name).write_bytes(tif.read_bytes())
    remote = RasterRef(uri=f"{base}/{tif.name}", sha256=wrong)
    assert _reason(remote).reason == "checksum_mismatch"
    # Hex case does not matter.
    with local_raster(RasterRef(uri=str(tif), sha256=_sha(tif).upper())):
        pass


def test_unknown_protocol_and_relative_paths_are_refused():
    error = _reason(RasterRef(uri="nosuchproto://bucket/x.tif"))
    assert error.reason == "unreachable" and "unknown protocol" in str(error)
    assert _reason(RasterRef(uri="relative/x.tif")).reason == "bad_uri"
    assert _reason(RasterRef(uri="file://otherhost/x.tif")).reason == "bad_uri"


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_missing_backend_names_the_package_to_install():
    error = _reason(RasterRef(uri="s3://bucket/x.tif"))
    assert error.reason == "unreachable" and "s3fs" in str(error)


def test_any_fsspec_filesystem_works(tif: Path, phase):
    fs = fsspec.filesystem("memory")
    fs.pipe("/products/ifg_without_suffix", tif.read_bytes())
    try:
        ref = RasterRef(uri="memory://products/ifg_without_suffix")
        with local_raster(ref) as path:
            assert path.read_bytes() == tif.read_bytes()
        np.testing.assert_allclose(load_wrapped_phase(ref).phase, phase, equal_nan=True)
    finally:
        fs.rm("/products", recursive=True)


def test_files_over_the_limit_are_too_large(tif: Path, http_dir):
    assert _reason(RasterRef(uri=str(tif)), max_bytes=100).reason == "too_large"
    root, base = http_dir
    (root / tif.name).write_bytes(tif.read_bytes())
    assert _reason(RasterRef(uri=f"{base}/{tif.name}"), max_bytes=100).reason == "too_large"


def test_read_errors_name_the_reference_not_the_temporary_file(tmp_path: Path, phase):
    utm = write_wrapped_phase_geotiff(tmp_path / "utm.tif", phase, TRANSFORM, crs="EPSG:32633")
    with pytest.raises(ProductError) as info:
        load_wrapped_phase(RasterRef(inline=utm.read_bytes()))
    assert info.value.reason == "wrong_crs"
    assert str(info.value).startswith("inline raster (")
    raster = load_wrapped_phase(RasterRef(inline=utm.read_bytes()), allowed_crs=["EPSG:32633"])
    assert raster.crs == "EPSG:32633"


# --------------------------------------------------------------------------- PS points


def _batch(n: int = 5, dates: tuple[date, ...] = EPOCHS) -> PSBatch:
    rng = np.random.default_rng(7)
    disp = rng.normal(0, 5, (n, len(dates))).astype(np.float32)
    disp[:1, 1] = np.nan
    return PSBatch(
        pid=np.array([f"PS{i:04d}" for i in range(n)]),
        longitude=14.0 + rng.uniform(0, 0.1, n),
        latitude=40.8 + rng.uniform(0, 0.1, n),
        dates=dates,
        displacement_mm=disp,
        quality=rng.uniform(0.5, 1, n).astype(np.float32),
    )


def _msg(**changes) -> PSUpdateMessage:
    fields = {"update_id": "u1", "dataset_id": "d", "tile_id": "t", "epochs": EPOCHS}
    fields.update(changes)
    return PSUpdateMessage(**fields)


def _assert_same(a: PSBatch, b: PSBatch, *, quality: bool = True) -> None:
    np.testing.assert_array_equal(a.pid, b.pid)
    np.testing.assert_allclose(a.longitude, b.longitude)
    np.testing.assert_allclose(a.latitude, b.latitude)
    assert a.dates == b.dates
    np.testing.assert_allclose(a.displacement_mm, b.displacement_mm, atol=0.051, equal_nan=True)
    if quality:
        np.testing.assert_allclose(a.quality, b.quality, equal_nan=True)


def test_inline_points_become_arrays():
    msg = _msg(points=(
        PSPoint("a", 14.0, 40.0, (1.0, None, 3.0, 4.5), 0.9),
        PSPoint("b", 14.1, 40.1, (0.0, 0.0, 0.0, 0.0)),
    ))
    batch = load_ps_points(msg)
    assert batch.pid.tolist() == ["a", "b"] and len(batch) == 2
    assert batch.displacement_mm.dtype == np.float32 and batch.displacement_mm.shape == (2, 4)
    assert np.isnan(batch.displacement_mm[0, 1])
    assert batch.quality[0] == np.float32(0.9) and np.isnan(batch.quality[1])
    assert batch.longitude.dtype == np.float64


def test_parquet_round_trip_local_and_over_http(tmp_path: Path, http_dir):
    batch = _batch()
    path = write_ps_parquet(tmp_path / "p.parquet", batch)
    assert list(pd.read_parquet(path).columns[:4]) == [
        "pid", "latitude", "longitude", "temporal_coherence"
    ]
    _assert_same(load_ps_points(_msg(points_uri=str(path), points_format="parquet")), batch)
    root, base = http_dir
    (root / "p.parquet").write_bytes(path.read_bytes())
    remote = _msg(points_uri=f"{base}/p.parquet", points_format="parquet")
    _assert_same(load_ps_points(remote), batch)


def test_egms_csv_points_with_and_without_temporal_coherence(tmp_path: Path):
    batch = _batch()
    path = write_egms_csv(tmp_path / "p.csv", batch.pid, batch.longitude, batch.latitude,
                          batch.dates, batch.displacement_mm)
    loaded = load_ps_points(_msg(points_uri=path.as_uri(), points_format="egms_csv"))
    _assert_same(loaded, batch, quality=False)
    assert np.isnan(loaded.quality).all()
    frame = pd.read_csv(path, dtype={"pid": str})
    frame.insert(4, "temporal_coherence", batch.quality.round(3))
    frame.to_csv(path, index=False)
    loaded = load_ps_points(_msg(points_uri=str(path), points_format="egms_csv"))
    np.testing.assert_allclose(loaded.quality, batch.quality, atol=1e-3)


@pytest.mark.parametrize("fmt", ["egms_csv", "parquet"])
def test_file_epochs_must_equal_the_message_epochs(tmp_path: Path, fmt):
    batch = _batch()
    if fmt == "parquet":
        path = write_ps_parquet(tmp_path / "p.parquet", batch)
    else:
        path = write_egms_csv(tmp_path / "p.csv", batch.pid, batch.longitude, batch.latitude,
                              batch.dates, batch.displacement_mm)
    for epochs in (EPOCHS[1:], (*EPOCHS[:-1], EPOCHS[-1] + timedelta(days=1))):
        with pytest.raises(ProductError) as info:
            load_ps_points(_msg(epochs=epochs, points_uri=str(path), points_format=fmt))
        assert info.value.reason == "epochs_mismatch"


def test_duplicate_pids_are_refused_inline_and_in_files(tmp_path: Path):
    point = PSPoint("a", 14.0, 40.0, (1.0, 2.0, 3.0, 4.0))
    with pytest.raises(ProductError) as info:
        load_ps_points(_msg(points=(point, point)))
    assert info.value.reason == "duplicate_pid"
    batch = _batch()
    batch.pid[3] = batch.pid[1]
    path = write_ps_parquet(tmp_path / "p.parquet", batch)
    with pytest.raises(ProductError) as info:
        load_ps_points(_msg(points_uri=str(path), points_format="parquet"))
    assert info.value.reason == "duplicate_pid" and batch.pid[1] in str(info.value)


def test_points_without_coordinates_are_bad_coordinates(tmp_path: Path):
    batch = _batch()
    batch.latitude[2] = np.nan
    path = write_ps_parquet(tmp_path / "p.parquet", batch)
    with pytest.raises(ProductError) as info:
        load_ps_points(_msg(points_uri=str(path), points_format="parquet"))
    assert info.value.reason == "bad_coordinates"


def test_ps_file_refusals_keep_their_reasons(tmp_path: Path):
    with pytest.raises(ProductError) as info:
        load_ps_points(_msg(points_uri=str(tmp_path / "none.csv"), points_format="egms_csv"))
    assert info.value.reason == "not_found"
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(ProductError) as info:
        load_ps_points(_msg(points_uri=str(junk), points_format="parquet"))
    assert info.value.reason == "unreadable"
    empty = write_ps_parquet(tmp_path / "empty.parquet", _batch(n=0))
    with pytest.raises(ProductError) as info:
        load_ps_points(_msg(points_uri=str(empty), points_format="parquet"))
    assert info.value.reason == "no_points"


def test_local_file_keeps_the_remote_name_and_adds_the_suffix(http_dir):
    root, base = http_dir
    (root / "points").write_bytes(b"pid\n")
    with local_file(f"{base}/points", suffix=".csv") as path:
        assert path.name == "points.csv" and path.read_bytes() == b"pid\n"
