"""Rolling hot spots of a PS dataset over the store: areas, replay, incremental recomputation."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from pipelines.hotspots.engine import (
    HotspotParams,
    HotspotStateStore,
    compute_hotspots,
    hotspot_id,
    write_products,
)
from pipelines.hotspots.gistar import GlobalStats, gi_star
from pipelines.hotspots.projection import to_metric
from pipelines.messages import validate
from pipelines.ps_store import PSStore, merge_epochs

DATES = [date(2023, 1, 1) + timedelta(days=12 * k) for k in range(40)]


def _tile(store, tile_id, lon0, rng, n=1500, bowl=True):
    """A tile of PS points; with ``bowl``, a ~400 m patch subsiding at ~25 mm/yr."""
    lon = lon0 + rng.uniform(0, 0.04, n)
    lat = 41.0 + rng.uniform(0, 0.04, n)
    vel = rng.normal(0, 2, n)
    inside = (lon - lon0 - 0.02) ** 2 + ((lat - 41.02) * 1.3) ** 2 < 0.004**2
    if bowl:
        vel[inside] = -25 + rng.normal(0, 3, inside.sum())
    t = np.array([(d - DATES[0]).days / 365.25 for d in DATES])
    disp = vel[:, None] * t[None, :] + rng.normal(0, 1.5, (n, len(DATES)))
    pid = np.array([f"{tile_id}-{i}" for i in range(n)])
    series, _ = merge_epochs(None, "ds", tile_id, pid, lon, lat, DATES, disp.astype("f4"), None)
    store.write_series(series)
    return inside, vel


def _trigger(tile, offset):
    return {"update_id": f"u{offset}", "tile_id": tile, "topic": "ps", "partition": 0,
            "offset": offset}


def test_a_subsiding_patch_becomes_one_cold_area_and_the_payload_is_valid(tmp_path):
    store = PSStore(tmp_path / "store")
    inside, _ = _tile(store, "T1", 14.0, np.random.default_rng(0))
    states = HotspotStateStore(tmp_path / "store")
    result, state = compute_hotspots(
        states.read("ds"), store, ["T1"], [_trigger("T1", 0)], HotspotParams()
    )
    (area,) = result.payload["areas"]
    assert area["sign"] == "cold" and area["status"] == "new"
    assert abs(area["n_points"] - inside.sum()) <= 0.2 * inside.sum()
    assert area["mean_abs_velocity_mm_yr"] > 15
    lon, lat = area["centroid"]
    assert abs(lon - 14.02) < 0.003 and abs(lat - 41.02) < 0.003
    assert result.payload["summary"]["n_cold"] > 0 and result.payload["summary"]["n_hot"] == 0
    result.payload["products"] = write_products(result, tmp_path / "out")
    validate("hotspot.v1", result.payload)
    for name in ("points.csv", "areas.geojson", "kde.nc", "kde.tif", "map.png"):
        assert (tmp_path / "out" / name).is_file()
    states.write(state)
    assert states.read("ds").last_hotspot_id == result.payload["hotspot_id"]


def test_a_replayed_computation_reports_the_same_statuses_and_ids(tmp_path):
    store = PSStore(tmp_path / "store")
    _tile(store, "T1", 14.0, np.random.default_rng(1))
    states = HotspotStateStore(tmp_path / "store")
    triggers = [_trigger("T1", 0)]
    first, state = compute_hotspots(states.read("ds"), store, ["T1"], triggers, HotspotParams())
    states.write(state)  # the daemon died after this, before publishing: a replay follows
    again, _ = compute_hotspots(states.read("ds"), store, ["T1"], triggers, HotspotParams())
    assert again.payload["hotspot_id"] == first.payload["hotspot_id"]
    assert [(a["id"], a["status"]) for a in again.payload["areas"]] == [
        (a["id"], a["status"]) for a in first.payload["areas"]
    ]
    # The next real update sees the area again: same id, no longer new.
    later, _ = compute_hotspots(states.read("ds"), store, ["T1"], [_trigger("T1", 1)],
                                HotspotParams())
    assert [a["id"] for a in later.payload["areas"]] == [a["id"] for a in first.payload["areas"]]
    assert all(a["status"] != "new" for a in later.payload["areas"])


def test_touched_tiles_are_recomputed_exactly_and_the_rest_keep_their_z(tmp_path):
    store = PSStore(tmp_path / "store")
    rng = np.random.default_rng(2)
    _tile(store, "A", 14.0, rng)
    _tile(store, "B", 14.2, rng, bowl=False)
    params = HotspotParams(full_recompute_drift=0.5)
    states = HotspotStateStore(tmp_path / "store")
    first, state = compute_hotspots(
        states.read("ds"), store, ["A", "B"], [_trigger("A", 0), _trigger("B", 1)], params
    )
    assert first.payload["method"]["recomputed"] == "whole_dataset"
    states.write(state)

    # Tile B gets one more epoch; only B's metric tiles are recomputed.
    old = store.read_series("ds", "B")
    extra = old.displacement_mm[:, -1:] + rng.normal(0, 1.0, (len(old.pid), 1)).astype("f4")
    new_date = [DATES[-1] + timedelta(days=12)]
    series, _ = merge_epochs(old, "ds", "B", old.pid, old.longitude, old.latitude, new_date,
                             extra, None)
    store.write_series(series)
    second, _ = compute_hotspots(states.read("ds"), store, ["B"], [_trigger("B", 2)], params)
    assert second.payload["method"]["recomputed"] == "touched_tiles"
    n_b = len(old.pid)
    assert second.payload["summary"]["n_recomputed"] >= n_b

    pts = second.points.set_index(["store_tile", "pid"])
    before = first.points.set_index(["store_tile", "pid"])
    xy, _ = to_metric(second.points["longitude"].to_numpy(), second.points["latitude"].to_numpy(),
                      state.crs)
    values = second.points["velocity_mm_yr"].to_numpy()
    whole = gi_star(xy, values, params.distance_m, global_stats=GlobalStats.of(values))
    is_b = (second.points["store_tile"] == "B").to_numpy()
    np.testing.assert_allclose(second.points["z"].to_numpy()[is_b], whole.z[is_b], atol=1e-12)
    a_rows = pts.loc["A"]
    np.testing.assert_array_equal(a_rows["z"].to_numpy(), before.loc["A"]["z"].to_numpy())


def test_hotspot_ids_depend_only_on_the_triggering_offsets():
    a = hotspot_id("ds", [_trigger("A", 3), _trigger("B", 1)])
    b = hotspot_id("ds", [_trigger("B", 1), _trigger("A", 3)])
    assert a == b != hotspot_id("ds", [_trigger("A", 3)])


@pytest.mark.parametrize("alpha, level", [(0.01, 3), (0.05, 2), (0.10, 1)])
def test_significance_level_keeps_only_bins_at_or_beyond_it(alpha, level):
    from pipelines.hotspots.engine import _significant_bins

    z = np.array([3.5, 2.2, 1.8, -3.5, 0.1])
    p = np.array([0.0005, 0.03, 0.07, 0.0005, 0.9])
    bins = _significant_bins(z, p, HotspotParams(alpha=alpha, fdr=False))
    assert np.all(np.abs(bins[bins != 0]) >= level)
    assert bins[0] == 3 and bins[3] == -3


def test_state_store_round_trip(tmp_path: Path):
    states = HotspotStateStore(tmp_path)
    state = states.read("a/b")
    assert state.points.empty and state.tracked == []
    state.window_end = "2024-01-01"
    states.write(state)
    assert states.read("a/b").window_end == "2024-01-01"
