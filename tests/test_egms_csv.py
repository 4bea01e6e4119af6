"""EGMS-style CSV parsing and the padded series handed to the trend model."""

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from monitor.scoring import valid_series
from pipelines.egms_csv import read_egms_csv, write_egms_csv
from pipelines.raster_io import ProductError


def _dates(n: int) -> list[date]:
    return [date(2020, 1, 3) + timedelta(days=6 * i) for i in range(n)]


def test_round_trip_orders_epochs_and_keeps_nan(tmp_path: Path):
    disp = np.arange(3 * 12, dtype=float).reshape(3, 12)
    disp[1, 4] = np.nan
    path = write_egms_csv(tmp_path / "a.csv", np.array(["1", "2", "3"]),
                          np.array([14.0, 14.1, 14.2]), np.array([37.0, 37.1, 37.2]),
                          _dates(12), disp)
    table = read_egms_csv(path)
    assert list(table.pid) == ["1", "2", "3"]
    assert table.dates == tuple(_dates(12))
    np.testing.assert_allclose(table.displacement_mm, disp, equal_nan=True)
    np.testing.assert_array_equal(table.time_days(), np.arange(12) * 6)
    assert "mean_velocity" in table.attributes


def test_valid_series_moves_gaps_to_the_end_and_drops_short_points(tmp_path: Path):
    disp = np.tile(np.arange(12, dtype=float), (3, 1))
    disp[0, [2, 5]] = np.nan
    disp[2, 3:] = np.nan  # only 3 valid epochs
    path = write_egms_csv(tmp_path / "a.csv", np.array(["a", "b", "c"]), np.zeros(3),
                          np.zeros(3), _dates(12), disp)
    keep, d, t = valid_series(read_egms_csv(path), min_epochs=10)
    assert keep.tolist() == [True, True, False]
    assert np.isnan(d[0, -2:]).all() and np.isnan(t[0, -2:]).all()
    np.testing.assert_array_equal(d[0, :10], [0, 1, 3, 4, 6, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(t[0, :10], np.array([0, 1, 3, 4, 6, 7, 8, 9, 10, 11]) * 6)
    np.testing.assert_array_equal(d[1], np.arange(12))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("pid,latitude,longitude\n1,2,3\n", "no_date_columns"),
        ("latitude,20200101\n1,2\n", "no_pid"),
        ("pid," + ",".join(f"202001{d:02d}" for d in range(1, 6)) + "\n1,1,2,3,4,5\n",
         "too_few_epochs"),
        ("pid," + ",".join(f"202001{d:02d}" for d in range(1, 12)) + "\n1," + "x," * 10 + "1\n",
         "non_numeric_displacement"),
        ("pid," + ",".join(f"202013{d:02d}" for d in range(1, 12)) + "\n1" + ",1" * 11 + "\n",
         "bad_date_column"),
    ],
)
def test_bad_csv_is_refused_with_a_reason(tmp_path: Path, content: str, reason: str):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ProductError) as info:
        read_egms_csv(path)
    assert info.value.reason == reason
