"""Persistent store of Persistent Scatterer (PS) time series and their last trend classes.

PS updates arrive per ``(dataset_id, tile_id)`` and carry a few new epochs for a set of
points. The full series of every point of a tile is kept here, and so is the tile's last
classification (class 0..4 and probability per point), because the class stage needs the
previous classes to report which points changed class.

Two layers:

* :func:`merge_epochs` is pure: it merges one update into a tile's series in memory. It is
  idempotent (re-applying an update changes nothing) because the pipeline replays the
  updates it had not committed when it was killed.
* :class:`PSStore` keeps one Zarr store per tile and kind on local disk::

      <root>/<dataset_id>/<tile_id>/series.zarr    dims point, epoch
      <root>/<dataset_id>/<tile_id>/classes.zarr   dims point

  Every write is atomic: the new version is written to a temporary sibling, fsynced, then
  swapped in with two renames. A reader sees the old or the new version, never a mix; a
  crash between the two renames is repaired on the next read or write.

Writes to one tile must come from one process at a time (the pipeline's design); an
advisory ``flock`` per store also keeps concurrent readers off a half-done swap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from zarr.codecs import BloscCodec

FORMAT_VERSION = 1
"""Version of the on-disk layout, stored in each Zarr store's attributes."""

SERIES_NAME = "series.zarr"
CLASSES_NAME = "classes.zarr"

CHUNK_TARGET_BYTES = 16 * 2**20
"""Uncompressed size aimed at for one ``displacement_mm`` chunk (whole rows of epochs)."""

MAX_CHUNK_POINTS = 65_536

_TMP_INFIX = ".tmp-"
_ASIDE_SUFFIX = ".old"
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_MAX_COMPONENT_BYTES = 255  # NAME_MAX of common local filesystems

# Float series compress much better once bytes of equal significance are grouped.
_FLOAT_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle", typesize=4)


# --------------------------------------------------------------------------------------
# In-memory records
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class PSSeries:
    """Full time series of the PS points of one tile.

    Attributes
    ----------
    dataset_id, tile_id : str
        Which tile this is.
    pid : ndarray of str, shape (n,)
        Point ids, unique within the tile.
    longitude, latitude : ndarray of float64, shape (n,)
        Degrees; NaN when never given.
    dates : ndarray of datetime64[D], shape (T,)
        Acquisition dates, strictly increasing.
    displacement_mm : ndarray of float32, shape (n, T)
        Displacement per point and epoch; NaN = no value.
    quality : ndarray of float32, shape (n,)
        Last quality value given for the point; NaN = unknown.
    """

    dataset_id: str
    tile_id: str
    pid: np.ndarray
    longitude: np.ndarray
    latitude: np.ndarray
    dates: np.ndarray
    displacement_mm: np.ndarray
    quality: np.ndarray

    def __post_init__(self) -> None:
        # Normalize once here so every consumer (and the store) can rely on the dtypes.
        self.pid = _as_pid_array(self.pid, "pid")
        n = self.pid.shape[0]
        self.longitude = _as_1d(self.longitude, np.float64, n, "longitude")
        self.latitude = _as_1d(self.latitude, np.float64, n, "latitude")
        self.quality = _as_1d(self.quality, np.float32, n, "quality")
        self.dates = _as_dates(self.dates)
        if self.dates.size > 1 and not np.all(np.diff(self.dates) > np.timedelta64(0, "D")):
            raise ValueError("dates must be strictly increasing")
        self.displacement_mm = np.asarray(self.displacement_mm, dtype=np.float32)
        if self.displacement_mm.shape != (n, self.dates.size):
            raise ValueError(
                f"displacement_mm has shape {self.displacement_mm.shape}, "
                f"expected (n_points, n_epochs) = {(n, self.dates.size)}"
            )

    @property
    def n_points(self) -> int:
        """Number of points ``n``."""
        return int(self.pid.shape[0])

    @property
    def n_epochs(self) -> int:
        """Number of epochs ``T``."""
        return int(self.dates.shape[0])

    def time_days(self) -> np.ndarray:
        """Days since the first epoch.

        Returns
        -------
        ndarray of float32, shape (T,)
            Empty when the series has no epoch.
        """
        if self.dates.size == 0:
            return np.zeros(0, dtype=np.float32)
        return ((self.dates - self.dates[0]) / np.timedelta64(1, "D")).astype(np.float32)

    def rows(self, pids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row indices of the given points.

        Parameters
        ----------
        pids : sequence of str
            Point ids, all present in the tile.

        Returns
        -------
        ndarray of intp, shape (len(pids),)

        Raises
        ------
        KeyError
            Listing (the first few of) the unknown ids.
        """
        query = _as_pid_array(pids, "pids")
        idx = _locate(self.pid, query)
        _raise_unknown(query, idx, f"{self.dataset_id}/{self.tile_id}")
        return idx


@dataclass(eq=False)
class PSClasses:
    """Last trend classification of the points of one tile.

    Attributes
    ----------
    dataset_id, tile_id : str
        Which tile this is.
    pid : ndarray of str, shape (m,)
        Classified point ids, unique.
    class_id : ndarray of int8, shape (m,)
        Trend class 0..4 (stable, linear, quadratic, bilinear, pue).
    probability : ndarray of float32, shape (m,)
        Probability of ``class_id`` given by the classifier.
    update_id : ndarray of str, shape (m,)
        Id of the update whose classification set the row.
    previous_class_id : ndarray of int8, shape (m,)
        The class the row had before ``update_id`` set it (-1 = none). Kept so that a
        replayed update, whose classes were already stored when the daemon died, still
        reports the same change (see :meth:`before`).
    """

    dataset_id: str
    tile_id: str
    pid: np.ndarray
    class_id: np.ndarray
    probability: np.ndarray
    update_id: np.ndarray
    previous_class_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.pid = _as_pid_array(self.pid, "pid")
        m = self.pid.shape[0]
        self.class_id = _as_1d(self.class_id, np.int8, m, "class_id")
        self.probability = _as_1d(self.probability, np.float32, m, "probability")
        self.update_id = _as_str_array(self.update_id, m, "update_id")
        if self.previous_class_id is None:
            self.previous_class_id = np.full(m, -1, dtype=np.int8)
        self.previous_class_id = _as_1d(self.previous_class_id, np.int8, m, "previous_class_id")

    def before(self, pids: Sequence[str] | np.ndarray, update_id: str) -> np.ndarray:
        """Each point's class as it was before ``update_id`` classified it (-1 = none).

        For a point last set by ``update_id`` itself (a replay after a crash) that is the
        stored previous class, otherwise the stored class.
        """
        query = _as_pid_array(pids, "pids")
        idx = _locate(self.pid, query)
        out = np.full(query.shape[0], -1, dtype=np.int8)
        known = idx >= 0
        rows = idx[known]
        replayed = self.update_id[rows] == update_id
        out[known] = np.where(replayed, self.previous_class_id[rows], self.class_id[rows])
        return out

    @classmethod
    def empty(cls, dataset_id: str, tile_id: str) -> PSClasses:
        """Classes of a tile never classified (what a first pass starts from)."""
        return cls(
            dataset_id,
            tile_id,
            np.zeros(0, dtype="U1"),
            np.zeros(0, dtype=np.int8),
            np.zeros(0, dtype=np.float32),
            np.zeros(0, dtype="U1"),
        )

    def lookup(self, pids: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored class and probability of the given points.

        Parameters
        ----------
        pids : sequence of str

        Returns
        -------
        class_id : ndarray of int8, shape (len(pids),)
            -1 where the point has no stored class.
        probability : ndarray of float32, shape (len(pids),)
            NaN where the point has no stored class.
        """
        query = _as_pid_array(pids, "pids")
        idx = _locate(self.pid, query)
        known = idx >= 0
        class_id = np.full(query.shape[0], -1, dtype=np.int8)
        probability = np.full(query.shape[0], np.nan, dtype=np.float32)
        class_id[known] = self.class_id[idx[known]]
        probability[known] = self.probability[idx[known]]
        return class_id, probability

    def with_updates(
        self,
        pids: Sequence[str] | np.ndarray,
        class_id: Sequence[int] | np.ndarray,
        probability: Sequence[float] | np.ndarray,
        update_id: str | Sequence[str] | np.ndarray,
    ) -> PSClasses:
        """Upsert classes: known points are overwritten, new ones appended in given order.

        Parameters
        ----------
        pids : sequence of str, length k
            Unique point ids.
        class_id : sequence of int, length k
            Classes 0..4.
        probability : sequence of float, length k
        update_id : str or sequence of str (length k)
            The update whose classification produced these classes.

        Returns
        -------
        PSClasses
            A new object; ``self`` is left unchanged.
        """
        query = _as_pid_array(pids, "pids")
        k = query.shape[0]
        _require_unique(query, "pids")
        new_class = _as_1d(class_id, np.int8, k, "class_id")
        if k and (new_class.min() < 0 or new_class.max() > 4):
            raise ValueError("class_id must be in 0..4")
        new_prob = _as_1d(probability, np.float32, k, "probability")
        if isinstance(update_id, str):
            new_update = np.full(k, update_id)
        else:
            new_update = _as_str_array(update_id, k, "update_id")

        idx = _locate(self.pid, query)
        known = idx >= 0
        added = ~known
        pid = np.concatenate([self.pid, query[added]])
        out_class = np.concatenate([self.class_id, new_class[added]])
        out_prob = np.concatenate([self.probability, new_prob[added]])
        out_update = np.concatenate([self.update_id, new_update[added]])
        out_previous = np.concatenate(
            [self.previous_class_id, np.full(int(added.sum()), -1, dtype=np.int8)]
        )
        rows = idx[known]
        # Re-applying the same update keeps the class it had before that update.
        same_update = self.update_id[rows] == new_update[known]
        out_previous[rows] = np.where(
            same_update, self.previous_class_id[rows], self.class_id[rows]
        )
        out_class[rows] = new_class[known]
        out_prob[rows] = new_prob[known]
        out_update[rows] = new_update[known]
        return PSClasses(
            self.dataset_id, self.tile_id, pid, out_class, out_prob, out_update, out_previous
        )


# --------------------------------------------------------------------------------------
# Pure merge
# --------------------------------------------------------------------------------------


def merge_epochs(
    series: PSSeries | None,
    dataset_id: str,
    tile_id: str,
    pid: Sequence[str] | np.ndarray,
    longitude: Sequence[float] | np.ndarray,
    latitude: Sequence[float] | np.ndarray,
    dates: Sequence[date] | np.ndarray,
    displacement_mm: np.ndarray,
    quality: Sequence[float] | np.ndarray | None = None,
) -> tuple[PSSeries, np.ndarray]:
    """Merge one update (new epochs for some points) into a tile's series; pure.

    The result has the union of the dates (sorted) and of the points (existing order kept,
    new points appended in the update's order). The update's values are written at their
    (point, date) positions, overwriting what was stored, so replaying an update writes the
    same numbers again and changes nothing. NaN in the update means "no value" and never
    erases a stored value; the same holds for NaN coordinates and NaN quality. Finite
    coordinates and quality replace the stored ones.

    Parameters
    ----------
    series : PSSeries or None
        The tile's stored series, None for a tile never seen. Not modified.
    dataset_id, tile_id : str
        The update's tile; must match ``series``.
    pid : sequence of str, length k
        Unique point ids of the update.
    longitude, latitude : sequence of float, length k
        Degrees.
    dates : sequence of datetime.date or ndarray of datetime64, length E
        Unique epochs of the update, in any order (columns of ``displacement_mm``).
    displacement_mm : array_like, shape (k, E)
        Displacement in mm; NaN = no value.
    quality : sequence of float, length k, optional
        Point quality; None or NaN = not given.

    Returns
    -------
    series : PSSeries
        The merged series (new arrays; nothing is shared with the input).
    rows : ndarray of intp, shape (k,)
        Row of each update point in the merged series, in the update's order.

    Raises
    ------
    ValueError
        On a shape mismatch, duplicate pids or dates, NaT, infinite displacement or a
        series of another tile.
    """
    if series is not None and (series.dataset_id, series.tile_id) != (dataset_id, tile_id):
        raise ValueError(
            f"update for {dataset_id!r}/{tile_id!r} cannot be merged into the series of "
            f"{series.dataset_id!r}/{series.tile_id!r}"
        )
    upd_pid = _as_pid_array(pid, "pid")
    k = upd_pid.shape[0]
    _require_unique(upd_pid, "pid")
    upd_lon = _as_1d(longitude, np.float64, k, "longitude")
    upd_lat = _as_1d(latitude, np.float64, k, "latitude")
    upd_quality = (
        np.full(k, np.nan, dtype=np.float32)
        if quality is None
        else _as_1d(quality, np.float32, k, "quality")
    )
    upd_dates = _as_dates(dates)
    if np.unique(upd_dates).size != upd_dates.size:
        raise ValueError("dates of an update must be unique")
    upd_disp = np.asarray(displacement_mm, dtype=np.float32)
    if upd_disp.shape != (k, upd_dates.size):
        raise ValueError(
            f"displacement_mm has shape {upd_disp.shape}, expected "
            f"(len(pid), len(dates)) = {(k, upd_dates.size)}"
        )
    if np.isinf(upd_disp).any():
        raise ValueError("displacement_mm must be finite or NaN")

    if series is None:
        series = PSSeries(
            dataset_id,
            tile_id,
            np.zeros(0, dtype="U1"),
            np.zeros(0, dtype=np.float64),
            np.zeros(0, dtype=np.float64),
            np.zeros(0, dtype="datetime64[D]"),
            np.zeros((0, 0), dtype=np.float32),
            np.zeros(0, dtype=np.float32),
        )

    # Epochs: union, then place the stored columns at their new positions.
    all_dates = np.union1d(series.dates, upd_dates)
    n_old = series.n_points
    idx = _locate(series.pid, upd_pid)
    added = idx < 0
    n_new = n_old + int(added.sum())
    idx[added] = np.arange(n_old, n_new)

    disp = np.full((n_new, all_dates.size), np.nan, dtype=np.float32)
    if all_dates.size == series.n_epochs:
        disp[:n_old] = series.displacement_mm  # no new epoch: a plain copy is faster
    else:
        disp[:n_old, np.searchsorted(all_dates, series.dates)] = series.displacement_mm
    cols = np.searchsorted(all_dates, upd_dates)

    # NaN in the update is "no value": only finite values overwrite.
    block = disp[np.ix_(idx, cols)]
    given = np.isfinite(upd_disp)
    block[given] = upd_disp[given]
    disp[np.ix_(idx, cols)] = block

    def _upsert(old: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = np.concatenate([old, np.full(n_new - n_old, np.nan, dtype=old.dtype)])
        keep = np.isfinite(new)
        out[idx[keep]] = new[keep]
        return out

    merged = PSSeries(
        dataset_id,
        tile_id,
        np.concatenate([series.pid, upd_pid[added]]),
        _upsert(series.longitude, upd_lon),
        _upsert(series.latitude, upd_lat),
        all_dates,
        disp,
        _upsert(series.quality, upd_quality),
    )
    return merged, idx


# --------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------


class PSStore:
    """Tile series and classes on local disk, one Zarr store (v3) per tile and kind.

    Parameters
    ----------
    root : str or Path
        Directory of the store; created if missing.

    Notes
    -----
    Reads load everything into memory and close the Zarr store, so the directory can be
    replaced right after. Ids are percent-encoded into path components (reversibly, see
    :func:`encode_id`) and also kept in each store's attributes.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        _makedirs_durable(self.root)

    # -- paths ------------------------------------------------------------------------

    def tile_dir(self, dataset_id: str, tile_id: str) -> Path:
        """Directory holding the stores of one tile."""
        return self.root / encode_id(dataset_id) / encode_id(tile_id)

    # -- series -----------------------------------------------------------------------

    def read_series(self, dataset_id: str, tile_id: str) -> PSSeries | None:
        """Load a tile's series into memory.

        Returns
        -------
        PSSeries or None
            None when the tile has no stored series.
        """
        ds = _read_store(self.tile_dir(dataset_id, tile_id) / SERIES_NAME)
        if ds is None:
            return None
        _check_attrs(ds, "series", dataset_id, tile_id)
        return PSSeries(
            dataset_id,
            tile_id,
            _strings_from_store(ds["pid"].values),
            ds["longitude"].values,
            ds["latitude"].values,
            ds["date"].values.astype("datetime64[D]"),
            ds["displacement_mm"].values,
            ds["quality"].values,
        )

    def write_series(self, series: PSSeries) -> None:
        """Replace a tile's series atomically (old or new version, never a mix)."""
        n, t = series.displacement_mm.shape
        # Whole rows per chunk so reading a point's series touches one chunk; bounded so a
        # chunk stays a few MiB whatever the number of epochs.
        rows = max(1, min(n, MAX_CHUNK_POINTS, CHUNK_TARGET_BYTES // (4 * max(t, 1))))
        ds = xr.Dataset(
            {
                "displacement_mm": (("point", "epoch"), series.displacement_mm),
                "longitude": ("point", series.longitude),
                "latitude": ("point", series.latitude),
                "quality": ("point", series.quality),
            },
            coords={
                "pid": ("point", _strings_to_store(series.pid)),
                "date": ("epoch", series.dates.astype("datetime64[ns]")),
            },
            attrs=_attrs("series", series.dataset_id, series.tile_id),
        )
        encoding: dict[str, dict[str, Any]] = {
            "displacement_mm": {
                "chunks": (rows, max(t, 1)),
                "compressors": (_FLOAT_COMPRESSOR,),
            },
            # Whole days since a fixed origin: exact, and independent of the first date.
            "date": {"units": "days since 1970-01-01", "dtype": "int32"},
        }
        _atomic_write(self.tile_dir(series.dataset_id, series.tile_id) / SERIES_NAME, ds, encoding)

    # -- classes ----------------------------------------------------------------------

    def read_classes(self, dataset_id: str, tile_id: str) -> PSClasses | None:
        """Load a tile's last classification into memory.

        Returns
        -------
        PSClasses or None
            None when the tile was never classified.
        """
        ds = _read_store(self.tile_dir(dataset_id, tile_id) / CLASSES_NAME)
        if ds is None:
            return None
        _check_attrs(ds, "classes", dataset_id, tile_id)
        return PSClasses(
            dataset_id,
            tile_id,
            _strings_from_store(ds["pid"].values),
            ds["class_id"].values,
            ds["probability"].values,
            _strings_from_store(ds["update_id"].values),
            ds["previous_class_id"].values if "previous_class_id" in ds else None,
        )

    def write_classes(self, classes: PSClasses) -> None:
        """Replace a tile's classes atomically."""
        ds = xr.Dataset(
            {
                "class_id": ("point", classes.class_id),
                "probability": ("point", classes.probability),
                "update_id": ("point", _strings_to_store(classes.update_id)),
                "previous_class_id": ("point", classes.previous_class_id),
            },
            coords={"pid": ("point", _strings_to_store(classes.pid))},
            attrs=_attrs("classes", classes.dataset_id, classes.tile_id),
        )
        _atomic_write(self.tile_dir(classes.dataset_id, classes.tile_id) / CLASSES_NAME, ds, {})

    # -- listing ----------------------------------------------------------------------

    def tiles(self, dataset_id: str | None = None) -> list[tuple[str, str]]:
        """Tiles with a stored series or classes, sorted.

        Parameters
        ----------
        dataset_id : str, optional
            Only this dataset's tiles.

        Returns
        -------
        list of (dataset_id, tile_id)
        """
        if dataset_id is None:
            dataset_dirs = [p for p in _subdirs(self.root) if _decodable(p.name)]
        else:
            dataset_dirs = [self.root / encode_id(dataset_id)]
        out: list[tuple[str, str]] = []
        for ddir in dataset_dirs:
            for tdir in _subdirs(ddir):
                if _decodable(tdir.name) and any(
                    _has_store(tdir / name) for name in (SERIES_NAME, CLASSES_NAME)
                ):
                    out.append((decode_id(ddir.name), decode_id(tdir.name)))
        return sorted(out)

    def read_all_series(self, dataset_id: str) -> Iterator[PSSeries]:
        """Yield the series of every tile of a dataset, one tile in memory at a time."""
        for ds_id, tile_id in self.tiles(dataset_id):
            series = self.read_series(ds_id, tile_id)
            if series is not None:
                yield series


# --------------------------------------------------------------------------------------
# Ids to path components
# --------------------------------------------------------------------------------------


def encode_id(value: str) -> str:
    """Turn a dataset or tile id into one safe, reversible path component.

    Letters, digits, ``-``, ``_`` and non-leading ``.`` are kept; every other character
    (``/``, spaces, ``%``, non-ASCII, a leading ``.``) becomes ``%XX`` of its UTF-8 bytes.
    A leading dot is encoded so no id can collide with the store's hidden temporary names.

    Raises
    ------
    ValueError
        For an empty id, ``.`` or ``..``, or one whose encoding exceeds 255 bytes.
    """
    if not isinstance(value, str) or value in ("", ".", ".."):
        raise ValueError(f"invalid id {value!r}: must be a non-empty string, not '.' or '..'")
    parts = []
    for i, ch in enumerate(value):
        if ch in _SAFE_CHARS and not (ch == "." and i == 0):
            parts.append(ch)
        else:
            parts.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    encoded = "".join(parts)
    if len(encoded) > _MAX_COMPONENT_BYTES:
        raise ValueError(f"id {value[:40]!r}... is too long for a path component")
    return encoded


def decode_id(component: str) -> str:
    """Inverse of :func:`encode_id`."""
    out = bytearray()
    i = 0
    while i < len(component):
        if component[i] == "%":
            out.append(int(component[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(component[i].encode("ascii"))
            i += 1
    return out.decode("utf-8")


def _decodable(component: str) -> bool:
    # Anything else in the tree (temporary dirs, lock files, foreign files) is not a tile.
    try:
        return encode_id(decode_id(component)) == component
    except (ValueError, UnicodeError, IndexError):
        return False


# --------------------------------------------------------------------------------------
# Array helpers
# --------------------------------------------------------------------------------------


def _as_pid_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "UOT":
        raise ValueError(f"{name} must hold strings, got dtype {arr.dtype}")
    if arr.dtype.kind == "O" and not all(isinstance(v, str) for v in arr):
        raise ValueError(f"{name} must hold strings")
    return _to_unicode(arr)


def _to_unicode(arr: np.ndarray) -> np.ndarray:
    """Fixed-width numpy unicode copy of a 1-D string array (``U``, object or StringDType)."""
    if arr.size == 0:
        return np.zeros(0, dtype="U1")
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "T":
        # StringDType (what Zarr's variable-length strings read back as) needs a width.
        width = max(1, int(np.strings.str_len(arr).max()))
        return arr.astype(f"U{width}")
    return arr.astype(str)


def _as_str_array(values: Any, length: int, name: str) -> np.ndarray:
    arr = _as_pid_array(values, name)
    if arr.shape != (length,):
        raise ValueError(f"{name} has shape {arr.shape}, expected ({length},)")
    return arr


def _as_1d(values: Any, dtype: Any, length: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.shape != (length,):
        raise ValueError(f"{name} has shape {arr.shape}, expected ({length},)")
    return arr


def _as_dates(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype="datetime64[D]")
    arr = arr.astype("datetime64[D]")
    if arr.ndim != 1:
        raise ValueError(f"dates must be one-dimensional, got shape {arr.shape}")
    if np.isnat(arr).any():
        raise ValueError("dates must not contain NaT")
    return arr


def _require_unique(values: np.ndarray, name: str) -> None:
    uniq, counts = np.unique(values, return_counts=True)
    if uniq.size != values.size:
        dup = uniq[counts > 1][:10].tolist()
        raise ValueError(f"duplicate {name}: {dup}")


def _locate(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query in ``keys`` (unique), -1 where absent; vectorized by sorting."""
    out = np.full(query.shape[0], -1, dtype=np.intp)
    if keys.size == 0 or query.size == 0:
        return out
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, query), keys.size - 1)
    found = sorted_keys[pos] == query
    out[found] = order[pos[found]]
    return out


def _raise_unknown(query: np.ndarray, idx: np.ndarray, where: str) -> None:
    missing = query[idx < 0]
    if missing.size:
        shown = missing[:10].tolist()
        more = f" (+{missing.size - 10} more)" if missing.size > 10 else ""
        raise KeyError(f"{missing.size} unknown pid(s) in tile {where}: {shown}{more}")


def _strings_to_store(values: np.ndarray) -> np.ndarray:
    # Object strings are written as Zarr v3 variable-length UTF-8 ("string" data type),
    # which has a stable spec; fixed-width numpy unicode maps to an unspecified v3 type.
    return values.astype(object)


def _strings_from_store(values: np.ndarray) -> np.ndarray:
    return _to_unicode(values)


# --------------------------------------------------------------------------------------
# Atomic directory replacement
# --------------------------------------------------------------------------------------


def _attrs(kind: str, dataset_id: str, tile_id: str) -> dict[str, Any]:
    return {
        "format": f"insar-monitor.ps-{kind}",
        "format_version": FORMAT_VERSION,
        "dataset_id": dataset_id,
        "tile_id": tile_id,
    }


def _check_attrs(ds: xr.Dataset, kind: str, dataset_id: str, tile_id: str) -> None:
    got = (ds.attrs.get("format"), ds.attrs.get("dataset_id"), ds.attrs.get("tile_id"))
    if got != (f"insar-monitor.ps-{kind}", dataset_id, tile_id):
        raise ValueError(f"store of {dataset_id!r}/{tile_id!r} holds {got}")
    if ds.attrs.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{kind} store of {dataset_id!r}/{tile_id!r} has format version "
            f"{ds.attrs.get('format_version')}, this code reads {FORMAT_VERSION}"
        )


def _aside(target: Path) -> Path:
    return target.with_name(f".{target.name}{_ASIDE_SUFFIX}")


def _has_store(target: Path) -> bool:
    return target.is_dir() or _aside(target).is_dir()


@contextlib.contextmanager
def _locked(target: Path, exclusive: bool) -> Iterator[None]:
    lock_path = target.with_name(f".{target.name}.lock")
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _recover(target: Path) -> None:
    """Undo a swap cut between its two renames (caller holds the exclusive lock)."""
    aside = _aside(target)
    if not target.exists() and aside.is_dir():
        os.rename(aside, target)
        _fsync_dir(target.parent)


def _read_store(target: Path) -> xr.Dataset | None:
    if not target.parent.is_dir():
        return None
    if not target.exists() and _aside(target).is_dir():
        with _locked(target, exclusive=True):
            _recover(target)
    with _locked(target, exclusive=False):
        if not target.is_dir():
            return None
        with xr.open_dataset(
            target, engine="zarr", consolidated=False, chunks=None, zarr_format=3
        ) as ds:
            return ds.load()


def _atomic_write(target: Path, ds: xr.Dataset, encoding: dict[str, dict[str, Any]]) -> None:
    _makedirs_durable(target.parent)
    aside = _aside(target)
    with _locked(target, exclusive=True):
        _recover(target)
        # Leftovers of killed writers: temporary copies, and an aside copy whose swap
        # completed (the target exists, so the aside is the older version).
        for stale in target.parent.glob(f".{target.name}{_TMP_INFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        if aside.exists():
            shutil.rmtree(aside)

        tmp = target.with_name(f".{target.name}{_TMP_INFIX}{uuid.uuid4().hex}")
        try:
            ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
            _fsync_tree(tmp)
            if target.exists():
                os.rename(target, aside)
            os.rename(tmp, target)
            _fsync_dir(target.parent)
        except Exception:
            # A failure (not a kill) leaves the store as it was.
            shutil.rmtree(tmp, ignore_errors=True)
            _recover(target)
            raise
        shutil.rmtree(aside, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    # Every file and directory entry must be durable before the rename publishes them.
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _makedirs_durable(path: Path) -> None:
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    # A new directory's entry lives in its parent; fsync parents so it survives a crash.
    for created in reversed(missing):
        _fsync_dir(created.parent)


def _subdirs(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir())
