"""PS series store: pure epoch merging, Zarr round trips, atomic replacement, tile listing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from pipelines import ps_store
from pipelines.ps_store import (
    PSClasses,
    PSSeries,
    PSStore,
    decode_id,
    encode_id,
    merge_epochs,
)

DS, TILE = "egms-L2a", "E40N20"
D = np.datetime64


def _update(
    series=None,
    pid=("a", "b"),
    dates=("2020-01-01", "2020-01-07"),
    disp=None,
    quality=None,
    lon=None,
    lat=None,
):
    k, e = len(pid), len(dates)
    if disp is None:
        disp = np.arange(k * e, dtype=np.float32).reshape(k, e)
    lon = np.linspace(10.0, 11.0, k) if lon is None else lon
    lat = np.linspace(45.0, 46.0, k) if lat is None else lat
    dates = np.array(dates, dtype="datetime64[D]")
    return merge_epochs(series, DS, TILE, list(pid), lon, lat, dates, disp, quality)


def _assert_series_equal(a: PSSeries, b: PSSeries) -> None:
    assert (a.dataset_id, a.tile_id) == (b.dataset_id, b.tile_id)
    assert a.pid.dtype.kind == b.pid.dtype.kind == "U"
    assert a.pid.tolist() == b.pid.tolist()
    assert a.dates.dtype == b.dates.dtype == np.dtype("datetime64[D]")
    np.testing.assert_array_equal(a.dates, b.dates)
    for name in ("longitude", "latitude", "displacement_mm", "quality"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # NaN == NaN here


def _series(n=4, t=3, pid=None, dataset_id=DS, tile_id=TILE, seed=0) -> PSSeries:
    rng = np.random.default_rng(seed)
    disp = rng.normal(size=(n, t)).astype(np.float32)
    disp[0, 1] = np.nan
    quality = rng.uniform(size=n).astype(np.float32)
    quality[-1] = np.nan
    return PSSeries(
        dataset_id,
        tile_id,
        np.array(pid if pid is not None else [f"p{i}" for i in range(n)]),
        rng.uniform(10, 11, n),
        rng.uniform(45, 46, n),
        D("2021-03-01") + 6 * np.arange(t),
        disp,
        quality,
    )


# ---------------------------------------------------------------------------- merge ---


def test_merge_into_empty_builds_the_series_in_update_order():
    s, rows = _update(
        pid=("b", "a"),
        dates=("2020-01-07", "2020-01-01"),
        disp=[[1.0, 2.0], [3.0, 4.0]],
        quality=[0.5, 0.9],
    )
    assert s.pid.tolist() == ["b", "a"]
    assert rows.tolist() == [0, 1]
    np.testing.assert_array_equal(s.dates, np.array(["2020-01-01", "2020-01-07"], "M8[D]"))
    # Columns follow the sorted dates, not the update's order.
    np.testing.assert_array_equal(s.displacement_mm, [[2.0, 1.0], [4.0, 3.0]])
    assert s.displacement_mm.dtype == np.float32
    np.testing.assert_array_equal(s.quality, np.float32([0.5, 0.9]))
    np.testing.assert_array_equal(s.time_days(), np.float32([0, 6]))
    assert s.rows(["a"]).tolist() == [1]


def test_merge_appends_epochs_and_keeps_old_values():
    s, _ = _update()
    s2, rows = _update(s, pid=("a",), dates=("2020-01-13",), disp=[[9.0]])
    assert s2.dates.size == 3
    np.testing.assert_array_equal(s2.displacement_mm, [[0, 1, 9], [2, 3, np.nan]])
    assert rows.tolist() == [0]
    # Pure: the input series is untouched.
    assert s.displacement_mm.shape == (2, 2)


def test_merge_appends_new_points_after_existing_ones():
    s, _ = _update()
    s2, rows = _update(
        s,
        pid=("c", "a"),
        dates=("2020-01-07",),
        disp=[[7.0], [8.0]],
        lon=[12.0, 10.5],
        lat=[47.0, 45.5],
    )
    assert s2.pid.tolist() == ["a", "b", "c"]
    assert rows.tolist() == [2, 0]
    np.testing.assert_array_equal(s2.displacement_mm, [[0, 8], [2, 3], [np.nan, 7]])
    np.testing.assert_array_equal(s2.longitude, [10.5, 11.0, 12.0])
    np.testing.assert_array_equal(s2.latitude, [45.5, 46.0, 47.0])
    assert np.isnan(s2.quality).all()


def test_replaying_an_update_changes_nothing():
    s, _ = _update(quality=[0.1, 0.2])
    upd = dict(
        pid=("c", "a"),
        dates=("2020-01-04", "2020-01-19"),
        disp=[[1.5, np.nan], [2.5, 3.5]],
        quality=[0.7, np.nan],
    )
    once, rows1 = _update(s, **upd)
    twice, rows2 = _update(once, **upd)
    _assert_series_equal(once, twice)
    np.testing.assert_array_equal(rows1, rows2)


def test_nan_in_an_update_does_not_erase_stored_values():
    s, _ = _update(quality=[0.1, 0.2])
    s2, _ = _update(
        s,
        pid=("a", "b"),
        disp=[[np.nan, 5.0], [np.nan, np.nan]],
        quality=[np.nan, 0.3],
        lon=[np.nan, 11.5],
        lat=[45.0, np.nan],
    )
    np.testing.assert_array_equal(s2.displacement_mm, [[0, 5], [2, 3]])
    np.testing.assert_array_equal(s2.quality, np.float32([0.1, 0.3]))
    np.testing.assert_array_equal(s2.longitude, [10.0, 11.5])
    np.testing.assert_array_equal(s2.latitude, [45.0, 46.0])


def test_an_epoch_between_existing_ones_is_sorted_in():
    s, _ = _update(dates=("2020-01-01", "2020-01-13"))
    s2, _ = _update(s, pid=("b",), dates=("2020-01-07",), disp=[[42.0]])
    np.testing.assert_array_equal(
        s2.dates, np.array(["2020-01-01", "2020-01-07", "2020-01-13"], "M8[D]")
    )
    np.testing.assert_array_equal(s2.displacement_mm, [[0, np.nan, 1], [2, 42, 3]])
    np.testing.assert_array_equal(s2.time_days(), np.float32([0, 6, 12]))


def test_dates_are_accepted_as_datetime_date_objects():
    s, _ = merge_epochs(
        None,
        DS,
        TILE,
        ["a"],
        [1.0],
        [2.0],
        [date(2020, 1, 7), date(2020, 1, 1)],
        [[1.0, 2.0]],
        None,
    )
    assert s.dates.tolist() == [date(2020, 1, 1), date(2020, 1, 7)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(disp=np.zeros((2, 3))), "displacement_mm has shape"),
        (dict(disp=np.zeros(2)), "displacement_mm has shape"),
        (dict(lon=[1.0]), "longitude has shape"),
        (dict(lat=[1.0, 2.0, 3.0]), "latitude has shape"),
        (dict(quality=[0.1]), "quality has shape"),
        (dict(pid=("a", "a")), "duplicate pid"),
        (dict(dates=("2020-01-01", "2020-01-01")), "unique"),
        (dict(disp=[[np.inf, 0.0], [0.0, 0.0]]), "finite"),
    ],
)
def test_malformed_updates_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _update(**kwargs)


def test_update_of_another_tile_or_with_numeric_pids_is_refused():
    s, _ = _update()
    with pytest.raises(ValueError, match="cannot be merged"):
        merge_epochs(s, DS, "other", ["a"], [1.0], [2.0], ["2020-01-01"], [[1.0]])
    with pytest.raises(ValueError, match="strings"):
        merge_epochs(None, DS, TILE, [1, 2], [1.0, 1.0], [2.0, 2.0], ["2020-01-01"], [[1.0], [2.0]])


def test_series_rows_names_unknown_pids():
    s, _ = _update()
    with pytest.raises(KeyError, match="zz"):
        s.rows(["a", "zz"])


def test_series_refuses_unsorted_dates():
    with pytest.raises(ValueError, match="strictly increasing"):
        PSSeries(
            DS,
            TILE,
            np.array(["a"]),
            [0.0],
            [0.0],
            np.array(["2020-01-07", "2020-01-01"], "M8[D]"),
            [[1.0, 2.0]],
            [np.nan],
        )


# -------------------------------------------------------------------------- classes ---


def test_classes_upsert_and_lookup():
    c = PSClasses.empty(DS, TILE).with_updates(["a", "b"], [1, 0], [0.9, 0.8], "u1")
    c2 = c.with_updates(["b", "c"], [3, 4], [0.7, 0.6], ["u2", "u2"])
    assert c2.pid.tolist() == ["a", "b", "c"]
    assert c2.class_id.tolist() == [1, 3, 4]
    assert c2.update_id.tolist() == ["u1", "u2", "u2"]
    np.testing.assert_array_equal(c2.probability, np.float32([0.9, 0.7, 0.6]))
    assert c.class_id.tolist() == [1, 0]  # the original is unchanged
    cls, prob = c2.lookup(["c", "zz", "a"])
    assert cls.dtype == np.int8 and cls.tolist() == [4, -1, 1]
    np.testing.assert_array_equal(prob, np.float32([0.6, np.nan, 0.9]))
    with pytest.raises(ValueError, match=r"0\.\.4"):
        c2.with_updates(["a"], [5], [0.5], "u3")
    with pytest.raises(ValueError, match="duplicate"):
        c2.with_updates(["a", "a"], [1, 1], [0.5, 0.5], "u3")


# ---------------------------------------------------------------------------- store ---


UNICODE_PIDS = ["PS-0001", "Zürich/ü €", "日本-測点", "", "x" * 80, "tab\there"]


def test_series_round_trip_is_exact(tmp_path):
    store = PSStore(tmp_path / "store")
    s = _series(n=len(UNICODE_PIDS), t=5, pid=UNICODE_PIDS)
    assert store.read_series(DS, TILE) is None
    store.write_series(s)
    _assert_series_equal(PSStore(tmp_path / "store").read_series(DS, TILE), s)


def test_classes_round_trip_is_exact(tmp_path):
    store = PSStore(tmp_path)
    assert store.read_classes(DS, TILE) is None
    c = PSClasses.empty(DS, TILE).with_updates(
        UNICODE_PIDS, [0, 1, 2, 3, 4, 0], np.linspace(0.2, 1, 6), "upd-ü-7"
    )
    store.write_classes(c)
    r = store.read_classes(DS, TILE)
    assert r.pid.tolist() == c.pid.tolist()
    assert r.class_id.dtype == np.int8 and r.class_id.tolist() == c.class_id.tolist()
    np.testing.assert_array_equal(r.probability, c.probability)
    assert r.probability.dtype == np.float32
    assert r.update_id.tolist() == ["upd-ü-7"] * 6


def test_empty_series_and_classes_round_trip(tmp_path):
    store = PSStore(tmp_path)
    s, _ = merge_epochs(None, DS, TILE, [], [], [], [], np.zeros((0, 0)), None)
    store.write_series(s)
    _assert_series_equal(store.read_series(DS, TILE), s)
    no_epochs, _ = merge_epochs(None, DS, "t2", ["a"], [1.0], [2.0], [], np.zeros((1, 0)))
    store.write_series(no_epochs)
    _assert_series_equal(store.read_series(DS, "t2"), no_epochs)
    store.write_classes(PSClasses.empty(DS, TILE))
    assert store.read_classes(DS, TILE).pid.size == 0


def test_overwrite_replaces_and_leaves_no_temporaries(tmp_path):
    store = PSStore(tmp_path)
    store.write_series(_series(seed=1))
    s2 = _series(n=7, t=9, seed=2)
    store.write_series(s2)
    _assert_series_equal(store.read_series(DS, TILE), s2)
    names = sorted(p.name for p in store.tile_dir(DS, TILE).iterdir())
    assert names == [".series.zarr.lock", "series.zarr"]


def test_ids_with_slashes_spaces_and_dots_stay_inside_the_root(tmp_path):
    store = PSStore(tmp_path / "root")
    odd = [("egms/L2a v1", "../etc"), ("50% done", ".hidden tile"), ("ü/..", "a.b")]
    for i, (ds_id, tile_id) in enumerate(odd):
        store.write_series(_series(dataset_id=ds_id, tile_id=tile_id, seed=i))
        tdir = store.tile_dir(ds_id, tile_id)
        assert tdir.resolve().parent.parent == (tmp_path / "root").resolve()
        assert not tdir.name.startswith(".")
        _assert_series_equal(
            store.read_series(ds_id, tile_id), _series(dataset_id=ds_id, tile_id=tile_id, seed=i)
        )
    assert store.tiles() == sorted(odd)
    for bad in ("", ".", ".."):
        with pytest.raises(ValueError, match="invalid id"):
            store.read_series(bad, TILE)
        with pytest.raises(ValueError, match="invalid id"):
            store.tile_dir(DS, bad)
    for value in ("a/b c", "..x", "%2F", "日本"):
        assert decode_id(encode_id(value)) == value


def test_tiles_lists_tiles_with_a_series_or_classes(tmp_path):
    store = PSStore(tmp_path)
    assert store.tiles() == []
    store.write_series(_series(tile_id="t2"))
    store.write_series(_series(tile_id="t1"))
    store.write_classes(PSClasses.empty("other", "t9"))
    (tmp_path / DS / "not%zz-a-tile").mkdir()  # foreign directory: ignored
    (tmp_path / DS / "t3").mkdir()  # no store in it: ignored
    assert store.tiles() == [(DS, "t1"), (DS, "t2"), ("other", "t9")]
    assert store.tiles(DS) == [(DS, "t1"), (DS, "t2")]
    assert store.tiles("never-written") == []
    assert [s.tile_id for s in store.read_all_series(DS)] == ["t1", "t2"]
    assert list(store.read_all_series("other")) == []


# ------------------------------------------------------------------ crash safety ---


class _Killed(BaseException):
    """Stands for the process being killed: not an Exception, so nothing rolls back."""


@pytest.mark.parametrize(
    ("crash_at", "survivor"),
    [("before_swap", "old"), ("between_renames", "old"), ("after_swap", "new")],
)
def test_a_write_killed_at_any_point_leaves_old_or_new_version(
    tmp_path, monkeypatch, crash_at, survivor
):
    store = PSStore(tmp_path)
    old, new = _series(n=5, t=4, seed=1), _series(n=6, t=7, seed=2)
    store.write_series(old)

    real_rename, real_rmtree = os.rename, ps_store.shutil.rmtree

    def fsync_tree(path):
        raise _Killed

    def rename(src, dst):
        if ps_store._TMP_INFIX in Path(src).name:
            raise _Killed
        real_rename(src, dst)

    def rmtree(path, *args, **kwargs):
        if Path(path).name.endswith(ps_store._ASIDE_SUFFIX):
            raise _Killed
        real_rmtree(path, *args, **kwargs)

    if crash_at == "before_swap":
        monkeypatch.setattr(ps_store, "_fsync_tree", fsync_tree)
    elif crash_at == "between_renames":
        monkeypatch.setattr(ps_store.os, "rename", rename)
    else:
        monkeypatch.setattr(ps_store.shutil, "rmtree", rmtree)
    with pytest.raises(_Killed):
        store.write_series(new)
    monkeypatch.undo()

    fresh = PSStore(tmp_path)
    assert fresh.tiles() == [(DS, TILE)]
    _assert_series_equal(fresh.read_series(DS, TILE), old if survivor == "old" else new)
    # The next write cleans whatever the killed one left behind.
    fresh.write_series(new)
    _assert_series_equal(fresh.read_series(DS, TILE), new)
    names = sorted(p.name for p in fresh.tile_dir(DS, TILE).iterdir())
    assert names == [".series.zarr.lock", "series.zarr"]


def test_a_failed_write_rolls_back_at_once(tmp_path, monkeypatch):
    store = PSStore(tmp_path)
    old = _series(seed=1)
    store.write_series(old)
    real_rename = os.rename

    def rename(src, dst):
        if ps_store._TMP_INFIX in Path(src).name:
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(ps_store.os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        store.write_series(_series(seed=2))
    monkeypatch.undo()
    names = sorted(p.name for p in store.tile_dir(DS, TILE).iterdir())
    assert names == [".series.zarr.lock", "series.zarr"]
    _assert_series_equal(store.read_series(DS, TILE), old)


def test_a_process_killed_between_the_renames_is_recovered(tmp_path):
    # A real kill (os._exit: no finally, no cleanup) in a child process.
    child = textwrap.dedent(
        f"""
        import os, sys
        import numpy as np
        from pipelines import ps_store
        store = ps_store.PSStore(sys.argv[1])
        d = np.datetime64("2020-01-01") + np.arange(3)
        s = ps_store.PSSeries({DS!r}, {TILE!r}, np.array(["a", "b"]), [1.0, 2.0],
                              [3.0, 4.0], d, np.ones((2, 3)), [np.nan, 0.5])
        store.write_series(s)
        real = os.rename
        def rename(src, dst):
            if ps_store._TMP_INFIX in os.path.basename(src):
                os._exit(17)
            real(src, dst)
        ps_store.os.rename = rename
        s.displacement_mm = np.full((2, 3), 2.0, np.float32)
        store.write_series(s)
        """
    )
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stderr
    assert not (tmp_path / DS / TILE / "series.zarr").exists()  # cut mid-swap
    s = PSStore(tmp_path).read_series(DS, TILE)
    np.testing.assert_array_equal(s.displacement_mm, np.ones((2, 3), np.float32))


# ------------------------------------------------------------------------- timing ---


def test_report_write_and_read_time_of_a_large_tile(tmp_path):
    """50,000 points x 200 epochs; prints timings (run with -s), asserts only correctness."""
    n, t = 50_000, 200
    rng = np.random.default_rng(0)
    disp = np.cumsum(rng.normal(0, 1.5, (n, t)), axis=1).astype(np.float32)
    disp[rng.random((n, t)) < 0.05] = np.nan
    s = PSSeries(
        DS,
        TILE,
        np.array([f"EGMS{i:010d}" for i in range(n)]),
        rng.uniform(10, 11, n),
        rng.uniform(45, 46, n),
        D("2016-01-01") + 6 * np.arange(t),
        disp,
        rng.uniform(0, 1, n),
    )
    store = PSStore(tmp_path)
    store.write_series(s)  # warm-up (imports, codec set-up)
    t0 = time.perf_counter()
    store.write_series(s)
    t1 = time.perf_counter()
    back = store.read_series(DS, TILE)
    t2 = time.perf_counter()
    merged, _ = merge_epochs(
        back,
        DS,
        TILE,
        s.pid,
        s.longitude,
        s.latitude,
        [D("2019-04-13")],
        rng.normal(size=(n, 1)),
        None,
    )
    t3 = time.perf_counter()
    size = sum(f.stat().st_size for f in (tmp_path / DS / TILE).rglob("*") if f.is_file())
    print(
        f"\n50k x 200 tile: write {t1 - t0:.3f} s, read {t2 - t1:.3f} s, "
        f"merge of one epoch {t3 - t2:.3f} s, on disk {size / 2**20:.1f} MiB "
        f"(raw {disp.nbytes / 2**20:.1f} MiB)"
    )
    _assert_series_equal(back, s)
    assert merged.n_epochs == t + 1


def test_classes_remember_the_class_before_an_update_so_a_replay_reports_the_same_change():
    from pipelines.ps_store import PSClasses

    c0 = PSClasses.empty("d", "t").with_updates(["a", "b"], [1, 1], [0.9, 0.9], "u1")
    assert list(c0.before(["a", "b", "z"], "u1")) == [-1, -1, -1]
    c1 = c0.with_updates(["a"], [2], [0.8], "u2")
    # As the next update sees it, and as a replay of u2 (after c1 was stored) sees it.
    assert list(c1.before(["a", "b"], "u3")) == [2, 1]
    assert list(c1.before(["a", "b"], "u2")) == [1, 1]
    replayed = c1.with_updates(["a"], [2], [0.8], "u2")
    assert list(replayed.previous_class_id) == [1, -1]
    assert list(replayed.before(["a"], "u2")) == [1]


def test_previous_classes_round_trip_through_the_store(tmp_path):
    from pipelines.ps_store import PSClasses, PSStore

    store = PSStore(tmp_path)
    c = PSClasses.empty("d", "t").with_updates(["a"], [1], [0.9], "u1")
    c = c.with_updates(["a", "b"], [3, 0], [0.7, 0.6], "u2")
    store.write_classes(c)
    back = store.read_classes("d", "t")
    assert back is not None
    assert list(back.previous_class_id) == [1, -1]
    assert list(back.before(["a"], "u2")) == [1]
