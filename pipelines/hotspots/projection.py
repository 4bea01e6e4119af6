"""Geographic <-> metric coordinates for the hot spot analysis (pure, pyproj).

Gi* distance bands and kernel radii are in metres, so PS/CT points given as WGS84
longitude/latitude are first projected to a metric CRS: the one the caller names (to keep
a dataset on the same grid over time), or the UTM zone of the points' mean position. Within
a UTM zone the scale error is at most ~0.1 %, far below what matters for a 150 m band.
"""

from __future__ import annotations

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

GEOGRAPHIC_CRS = "EPSG:4326"

# UTM is defined up to 84 deg N and 80 deg S; polar areas need a polar stereographic CRS,
# which the caller must then name.
_UTM_NORTH_LIMIT = 84.0
_UTM_SOUTH_LIMIT = -80.0


def utm_crs_for(lon: np.ndarray, lat: np.ndarray) -> str:
    """The WGS84 UTM zone CRS of the points' mean position, as ``"EPSG:326zz"``/``"EPSG:327zz"``.

    The mean longitude is a circular mean, so points on both sides of the antimeridian get
    the zone they share. The standard 6-degree zones are used (no Norway/Svalbard
    exceptions; any zone is metric, the exceptions only change which one).

    Parameters
    ----------
    lon, lat : ndarray, shape (n,)
        Degrees (WGS84), validated as in :func:`to_metric`.

    Raises
    ------
    ValueError
        If the mean latitude is outside UTM's range (80 S to 84 N).

    Examples
    --------
    >>> utm_crs_for(np.array([9.1, 9.3]), np.array([45.0, 45.1]))
    'EPSG:32632'
    >>> utm_crs_for(np.array([-70.6]), np.array([-33.4]))
    'EPSG:32719'
    """
    lon_arr, lat_arr = _as_lonlat(lon, lat)
    if lon_arr.size == 0:
        raise ValueError("no points to choose a UTM zone for")
    radians = np.deg2rad(lon_arr)
    mean_lon = float(np.rad2deg(np.arctan2(np.sin(radians).mean(), np.cos(radians).mean())))
    mean_lat = float(lat_arr.mean())
    if not _UTM_SOUTH_LIMIT <= mean_lat <= _UTM_NORTH_LIMIT:
        raise ValueError(
            f"mean latitude {mean_lat:.2f} is outside UTM (80 S to 84 N): name a metric CRS"
        )
    zone = min(int(np.floor((mean_lon + 180.0) / 6.0)) + 1, 60)
    return f"EPSG:{32600 + zone if mean_lat >= 0 else 32700 + zone}"


def to_metric(
    lon: np.ndarray, lat: np.ndarray, crs: str | None = None
) -> tuple[np.ndarray, str]:
    """Project WGS84 longitude/latitude to a metric CRS.

    Parameters
    ----------
    lon, lat : ndarray, shape (n,)
        Degrees, longitude in [-180, 180], latitude in [-90, 90]; NaN is rejected.
    crs : str, optional
        Target CRS (anything pyproj accepts, e.g. ``"EPSG:3035"``); it must be projected
        with metre axes. Default: the UTM zone of the points' mean position
        (:func:`utm_crs_for`).

    Returns
    -------
    xy : ndarray of float64, shape (n, 2)
        Easting, northing in metres.
    crs : str
        The CRS used, as ``"EPSG:nnnn"`` where it has a code, else WKT.

    Raises
    ------
    ValueError
        On NaN or out-of-range coordinates, arrays of different shapes, or a CRS that is
        not projected in metres.

    Examples
    --------
    >>> xy, crs = to_metric(np.array([9.0]), np.array([0.0]))
    >>> crs, xy.round(3).tolist()
    ('EPSG:32632', [[500000.0, 0.0]])
    """
    lon_arr, lat_arr = _as_lonlat(lon, lat)
    name = utm_crs_for(lon_arr, lat_arr) if crs is None else _metric_crs_name(crs)
    transformer = Transformer.from_crs(GEOGRAPHIC_CRS, name, always_xy=True)
    x, y = transformer.transform(lon_arr, lat_arr)
    return np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)]), name


def from_metric(xy: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`to_metric`: metric coordinates back to WGS84 longitude/latitude.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
        Easting, northing in metres in ``crs``.
    crs : str
        The metric CRS (as returned by :func:`to_metric`).

    Returns
    -------
    lon, lat : ndarray of float64, shape (n,)
        Degrees.
    """
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("xy contains NaN or inf coordinates")
    transformer = Transformer.from_crs(_metric_crs_name(crs), GEOGRAPHIC_CRS, always_xy=True)
    lon, lat = transformer.transform(arr[:, 0], arr[:, 1])
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def _metric_crs_name(crs: str) -> str:
    """Validate that ``crs`` is projected with metre axes; return its ``EPSG:nnnn`` name."""
    try:
        parsed = CRS.from_user_input(crs)
    except (CRSError, TypeError) as e:
        raise ValueError(f"not a CRS: {crs!r}") from e
    units = {axis.unit_name for axis in parsed.axis_info}
    if not parsed.is_projected or units != {"metre"}:
        raise ValueError(f"{crs!r} is not a projected CRS in metres (axis units {units})")
    code = parsed.to_epsg()
    return f"EPSG:{code}" if code is not None else parsed.to_wkt()


def _as_lonlat(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon_arr = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat_arr = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    if lon_arr.ndim != 1 or lon_arr.shape != lat_arr.shape:
        raise ValueError(f"lon {lon_arr.shape} and lat {lat_arr.shape} must be 1-D, same shape")
    if not (np.isfinite(lon_arr).all() and np.isfinite(lat_arr).all()):
        raise ValueError("longitude/latitude contain NaN or inf")
    if lon_arr.size and (np.abs(lon_arr).max() > 180.0 or np.abs(lat_arr).max() > 90.0):
        raise ValueError("longitude must be in [-180, 180] and latitude in [-90, 90] degrees")
    return lon_arr, lat_arr
