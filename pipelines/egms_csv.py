"""Read and write EGMS-style ground-motion CSV files (PS points with one column per epoch).

EGMS products carry point attributes (``pid``, ``latitude``, ``longitude``,
``mean_velocity``, ...) followed by one displacement column per acquisition, named
``YYYYMMDD`` and given in mm. This adapter turns such a file into arrays and refuses,
with a one-line reason, files that cannot hold time series: missing, unparsable,
without ``pid`` or without date columns, or with fewer epochs than the classifier needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.raster_io import ProductError

DATE_COLUMN = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class PSTable:
    """Points of one EGMS-style file.

    Attributes
    ----------
    pid : ndarray of str, shape (n,)
    longitude, latitude : ndarray of float64, shape (n,), degrees (NaN if absent)
    dates : tuple of datetime.date, length T, increasing
    displacement_mm : ndarray of float32, shape (n, T); NaN where a point has no value
    attributes : pandas.DataFrame
        Every non-date column, indexed like ``pid``.
    """

    pid: np.ndarray
    longitude: np.ndarray
    latitude: np.ndarray
    dates: tuple[date, ...]
    displacement_mm: np.ndarray
    attributes: pd.DataFrame

    def time_days(self) -> np.ndarray:
        """Days since the first epoch, float32, shape (T,)."""
        origin = self.dates[0]
        return np.array([(d - origin).days for d in self.dates], dtype=np.float32)


def read_egms_csv(path: Path | str, *, min_epochs: int = 10) -> PSTable:
    """Parse an EGMS-style CSV.

    Raises
    ------
    ProductError
        ``not_found``, ``unreadable``, ``no_pid``, ``no_date_columns``, ``too_few_epochs``,
        ``bad_date_column``, ``non_numeric_displacement``.
    """
    path = Path(path)
    if not path.is_file():
        raise ProductError("not_found", f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype={"pid": str}, low_memory=False)
    except Exception as e:
        raise ProductError("unreadable", f"{path}: not a readable CSV ({e})") from e
    if "pid" not in frame.columns:
        raise ProductError("no_pid", f"{path}: no 'pid' column; EGMS files identify points by pid")
    date_cols = [c for c in frame.columns if DATE_COLUMN.match(str(c))]
    if not date_cols:
        raise ProductError(
            "no_date_columns",
            f"{path}: no YYYYMMDD displacement columns; EGMS time series files have one per epoch",
        )
    if len(date_cols) < min_epochs:
        raise ProductError(
            "too_few_epochs",
            f"{path}: {len(date_cols)} epochs; at least {min_epochs} are needed to classify "
            "a trend",
        )
    try:
        parsed = [datetime.strptime(c, "%Y%m%d").date() for c in date_cols]
    except ValueError as e:
        raise ProductError("bad_date_column", f"{path}: a date column is not a date ({e})") from e
    order = np.argsort(parsed, kind="stable")
    date_cols = [date_cols[i] for i in order]
    dates = tuple(parsed[i] for i in order)
    if len(set(dates)) != len(dates):
        raise ProductError("bad_date_column", f"{path}: the same epoch appears twice")
    try:
        disp = frame[date_cols].apply(pd.to_numeric, errors="raise").to_numpy(np.float32, copy=True)
    except (ValueError, TypeError) as e:
        raise ProductError(
            "non_numeric_displacement", f"{path}: displacement columns hold non-numbers ({e})"
        ) from e
    disp[~np.isfinite(disp)] = np.nan
    attrs = frame.drop(columns=date_cols)

    def column(name: str) -> np.ndarray:
        if name in attrs:
            return pd.to_numeric(attrs[name], errors="coerce").to_numpy(np.float64)
        return np.full(len(attrs), np.nan)

    return PSTable(
        pid=attrs["pid"].astype(str).to_numpy(),
        longitude=column("longitude"),
        latitude=column("latitude"),
        dates=dates,
        displacement_mm=disp,
        attributes=attrs.reset_index(drop=True),
    )


def write_egms_csv(
    path: Path | str,
    pid: np.ndarray,
    longitude: np.ndarray,
    latitude: np.ndarray,
    dates: list[date] | tuple[date, ...],
    displacement_mm: np.ndarray,
) -> Path:
    """Write points as an EGMS-style CSV (attributes, ``mean_velocity`` in mm/yr, epochs in mm).

    ``displacement_mm`` has shape (n, T); NaN is written as an empty cell.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    disp = np.asarray(displacement_mm, dtype=np.float64)
    years = np.array([(d - dates[0]).days for d in dates], dtype=float) / 365.25
    velocity = np.full(len(disp), np.nan)
    for i, row in enumerate(disp):
        ok = np.isfinite(row)
        if ok.sum() >= 2:
            velocity[i] = np.polyfit(years[ok], row[ok], 1)[0]
    table = pd.DataFrame(
        {
            "pid": pid,
            "mp_type": "PS",
            "latitude": latitude,
            "longitude": longitude,
            "mean_velocity": np.round(velocity, 2),
        }
    )
    epochs = pd.DataFrame(np.round(disp, 1), columns=[d.strftime("%Y%m%d") for d in dates])
    pd.concat([table, epochs], axis=1).to_csv(path, index=False)
    return path
