"""Fetch the files a message refers to (claim check) and load them as checked arrays.

Messages carry rasters and PS point files by reference: a local path, ``file://``,
``http(s)://``, ``s3://`` or any URL fsspec opens, or (small products only) inline bytes.
This adapter turns a reference into a local file for rasterio/xarray/pandas, which all want a
path: local files are used in place (never copied), inline bytes and remote files go to a
temporary file that lives as long as the ``with`` block.

Failures raise :class:`pipelines.raster_io.ProductError` with the reason routed to the
dead-letter topic: ``bad_uri``, ``forbidden_uri`` (a scheme outside the allow-list, or a local
path that resolves outside the allowed roots), ``not_found``, ``unreachable`` (network, server
or missing fsspec backend: the message says which package to install), ``too_large`` (declared,
stated by the store, or seen while streaming), ``checksum_mismatch``; PS loading adds
``epochs_mismatch``, ``duplicate_pid``, ``bad_coordinates``, ``no_points`` and the reasons of
:mod:`pipelines.egms_csv`. A :class:`FetchPolicy` carries the allow-lists and the retry policy
(transient ``unreachable`` errors are retried with exponential backoff; a missing file is
``not_found`` at once); ``docs/bad-input.md`` describes both.
Temporary files go to the system temp directory (``TMPDIR``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import pandas as pd

from pipelines.egms_csv import DATE_COLUMN, read_egms_csv
from pipelines.messages import PSUpdateMessage, RasterRef
from pipelines.raster_io import NETCDF_SUFFIXES, PhaseRaster, ProductError, read_wrapped_phase

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_PIXELS = 200_000_000
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_ALLOWED_SCHEMES = ("file", "http", "https", "s3")
_CHUNK = 1024 * 1024
# fsspec backends live in separate packages; name the one to install in the error.
_BACKEND_PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
    "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp", "sftp": "paramiko",
    "ssh": "paramiko", "hf": "huggingface_hub", "webhdfs": "requests",
}
_FORMAT_SUFFIX = {"geotiff": ".tif", "netcdf": ".nc"}
_PS_SUFFIX = {"egms_csv": ".csv", "parquet": ".parquet"}
QUALITY_COLUMN = "temporal_coherence"
# HTTP answers worth another try: timeout, throttled, server-side failures.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_URI_CHARS = 200

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchPolicy:
    """Where references may point, and how hard to try to fetch them.

    The pipeline builds it from the ``products`` section of the configuration
    (:meth:`pipelines.context.PipelineContext.fetch_policy`); the default is permissive
    (any scheme, any local path, no retries) for library callers and tests.

    Attributes
    ----------
    allowed_schemes : tuple of str or None
        URI schemes accepted (absolute paths count as ``file``); None = any. Others are
        ``forbidden_uri``.
    allowed_roots : tuple of str
        Directories local files (absolute paths, ``file://``) must resolve into, after
        ``os.path.realpath`` (so ``..`` and symlinks cannot escape); empty = anywhere.
    retries : int
        Extra attempts after a transient failure (network error, timeout, HTTP 408/429/5xx).
    backoff_s : float
        Pause before the first retry; doubled before each further one.
    """

    allowed_schemes: tuple[str, ...] | None = None
    allowed_roots: tuple[str, ...] = ()
    retries: int = 0
    backoff_s: float = 1.0


class TransientFetchError(ProductError):
    """An ``unreachable`` failure that may pass: retried by :func:`local_file`."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


# --------------------------------------------------------------------------- locations


def _short_uri(uri: str) -> str:
    return uri if len(uri) <= _MAX_URI_CHARS else uri[: _MAX_URI_CHARS - 3] + "..."


def _local_path(uri: str) -> Path | None:
    """The local path of ``file://`` URLs and absolute paths; None for other schemes."""
    if uri.startswith("/"):
        return Path(uri)
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return None
    if parts.netloc not in ("", "localhost"):
        raise ProductError(
            "bad_uri", f"{uri}: file:// URLs name a local file; use file:///absolute/path"
        )
    path = url2pathname(parts.path)
    if "\x00" in path:
        raise ProductError("bad_uri", f"{_short_uri(uri)}: a NUL character cannot be in a path")
    return Path(path)


def _scheme(uri: str) -> str:
    """Lower-case scheme of ``uri``; ``file`` for absolute paths (``bad_uri`` if none)."""
    if uri.startswith("/") or urlsplit(uri).scheme.lower() == "file":
        return "file"
    return _protocol(uri)


def _inside(path: str, root: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([path, real_root]) == real_root


def check_uri(uri: str, policy: FetchPolicy | None = None) -> Path | None:
    """Apply ``policy``'s allow-lists to ``uri`` without touching what it names.

    Parameters
    ----------
    uri : str
        Absolute path or URL of a message's reference.
    policy : FetchPolicy, optional
        Default: any scheme, any local path.

    Returns
    -------
    pathlib.Path or None
        The local file for absolute paths and ``file://`` URLs (resolved by
        ``os.path.realpath`` when roots are set), None for remote URLs.

    Raises
    ------
    ProductError
        ``bad_uri`` (no scheme, ``file://host/...``, NUL character) or ``forbidden_uri``
        (scheme not allowed, or a local path resolving outside every allowed root).
    """
    policy = policy or FetchPolicy()
    scheme = _scheme(uri)
    allowed = policy.allowed_schemes
    if allowed is not None and scheme not in {s.lower() for s in allowed}:
        raise ProductError(
            "forbidden_uri",
            f"{_short_uri(uri)}: scheme '{scheme}' is not allowed here "
            f"(products.allowed_uri_schemes: {', '.join(allowed) or 'none'})",
        )
    local = _local_path(uri)
    if local is None or not policy.allowed_roots:
        return local
    real = os.path.realpath(local)
    if not any(_inside(real, root) for root in policy.allowed_roots):
        raise ProductError(
            "forbidden_uri",
            f"{_short_uri(uri)}: resolves (after '..' and symlinks) outside the allowed "
            "directories (products.allowed_roots); publish products from the shared store",
        )
    return Path(real)


def _protocol(uri: str) -> str:
    if "://" not in uri:
        raise ProductError(
            "bad_uri",
            f"{uri}: not an absolute path or URL; give /absolute/path or a URL such as "
            "https://... or s3://...",
        )
    return uri.split("://", 1)[0].lower()


def _check_backend(uri: str) -> None:
    """Refuse unknown protocols and protocols whose fsspec backend is not installed."""
    import fsspec
    from fsspec.registry import known_implementations, registry

    protocol = _protocol(uri)
    if protocol not in known_implementations and protocol not in registry:
        raise ProductError(
            "unreachable", f"{uri}: unknown protocol '{protocol}://' (no fsspec implementation)"
        )
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as e:
        package = _BACKEND_PACKAGES.get(protocol, "its fsspec backend")
        raise ProductError(
            "unreachable",
            f"{uri}: '{protocol}://' needs a package that is not installed: install {package} "
            f"({e})",
        ) from e


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _remote_error(uri: str, e: Exception) -> ProductError:
    """Map what fsspec and its backends raise onto not_found / unreachable."""
    if isinstance(e, ProductError):
        return e
    for cause in _chain(e):
        status = getattr(cause, "status", None)
        if isinstance(status, int) and status >= 400:
            if status in (404, 410):
                return ProductError("not_found", f"{uri}: not found (HTTP {status})")
            if status in _TRANSIENT_STATUS:
                return TransientFetchError(f"{uri}: server answered HTTP {status}")
            return ProductError(
                "unreachable", f"{uri}: server answered HTTP {status}; check access"
            )
    for cause in _chain(e):
        # fsspec's HTTP backend reports a refused connection as FileNotFoundError caused by
        # a connection error: look through the chain before trusting the outer type.
        # Timeouts (asyncio's included) are OSErrors too.
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            return TransientFetchError(
                f"{uri}: cannot be reached ({type(cause).__name__}: {cause})"
            )
    if isinstance(e, FileNotFoundError):
        return ProductError("not_found", f"{uri}: not found")
    return ProductError("unreachable", f"{uri}: cannot be fetched ({type(e).__name__}: {e})")


def _storage_options(
    uri: str, timeout_s: float, storage_options: Mapping[str, Any] | None
) -> dict[str, Any]:
    options = dict(storage_options or {})
    if _protocol(uri) in ("http", "https") and "client_kwargs" not in options:
        import aiohttp

        options["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(total=timeout_s)}
    return options


def _download(
    uri: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float,
    storage_options: Mapping[str, Any] | None,
) -> None:
    """Copy ``uri`` to the local file ``dest`` through fsspec, at most ``max_bytes`` of it."""
    import fsspec

    _check_backend(uri)
    try:
        fs, path = fsspec.core.url_to_fs(uri, **_storage_options(uri, timeout_s, storage_options))
        size = fs.size(path)  # None when the server does not say
        if size is not None and size > max_bytes:
            raise ProductError(
                "too_large", f"{uri}: {size} bytes exceeds the limit of {max_bytes} bytes"
            )
        # get_file streams in one request (open() would issue a range request per block);
        # the callback stops it as soon as more than max_bytes arrived.
        fs.get_file(path, str(dest), callback=_size_guard(uri, max_bytes))
    except Exception as e:
        raise _remote_error(uri, e) from e
    if dest.stat().st_size > max_bytes:
        raise ProductError(
            "too_large", f"{uri}: more than {max_bytes} bytes; raise the limit or split it"
        )


def _size_guard(uri: str, max_bytes: int):  # -> fsspec.callbacks.Callback
    """An fsspec transfer callback raising ``too_large`` once the stream passes ``max_bytes``."""
    from fsspec.callbacks import Callback

    def too_large(what: str) -> ProductError:
        return ProductError(
            "too_large", f"{uri}: {what} exceeds the limit of {max_bytes} bytes; "
            "raise products.max_raster_bytes or split the product",
        )

    class _Guard(Callback):
        def set_size(self, size: int | None) -> None:
            super().set_size(size)
            if size is not None and size > max_bytes:
                raise too_large(f"{size} bytes (announced by the server)")

        def relative_update(self, inc: int = 1) -> None:
            super().relative_update(inc)
            if self.value > max_bytes:
                raise too_large("the download")

    return _Guard()


def _download_with_retries(
    uri: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float,
    storage_options: Mapping[str, Any] | None,
    policy: FetchPolicy,
) -> None:
    """:func:`_download`, retried on :class:`TransientFetchError` as ``policy`` says."""
    attempts = 1 + max(0, policy.retries)
    for attempt in range(attempts):
        try:
            _download(
                uri, dest, max_bytes=max_bytes, timeout_s=timeout_s,
                storage_options=storage_options,
            )
            return
        except TransientFetchError as e:
            if attempt + 1 == attempts:
                if attempts == 1:
                    raise
                raise TransientFetchError(
                    f"{e} (gave up after {attempts} attempts; republish the dead letter's "
                    "original once the store is back)"
                ) from e
            delay = policy.backoff_s * 2**attempt
            log.warning(
                "fetch failed, retrying",
                extra={"uri": _short_uri(uri), "attempt": attempt + 1, "delay_s": delay,
                       "error": str(e)},
            )
            time.sleep(delay)


def _check_declared(uri: str, declared_size: int | None, max_bytes: int) -> None:
    if declared_size is not None and declared_size > max_bytes:
        raise ProductError(
            "too_large",
            f"{_short_uri(uri)}: the message declares {declared_size} bytes, over the limit of "
            f"{max_bytes} bytes (products.max_raster_bytes); the file was not fetched",
        )


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (what a message's ``sha256`` field holds)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(name: str, actual: str, expected: str | None) -> None:
    if expected is not None and actual.lower() != expected.lower():
        raise ProductError(
            "checksum_mismatch",
            f"{name}: sha256 {actual} differs from {expected.lower()} given in the message; "
            "the file changed or was truncated: re-publish it",
        )


@contextmanager
def local_file(
    uri: str,
    *,
    suffix: str = "",
    sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    storage_options: Mapping[str, Any] | None = None,
    policy: FetchPolicy | None = None,
    declared_size: int | None = None,
) -> Iterator[Path]:
    """Yield a local path holding the file at ``uri``, for the duration of the block.

    Parameters
    ----------
    uri : str
        Absolute local path, ``file://`` URL, or any URL fsspec opens (``https://``,
        ``s3://``, ``memory://``, ...).
    suffix : str
        Suffix of the temporary copy of a remote file (readers choose formats by suffix);
        the remote name's own suffix when empty.
    sha256 : str, optional
        Expected hex SHA-256 of the bytes; checked for local and remote files alike.
    max_bytes : int
        Largest file accepted: checked against ``declared_size``, then the size the file
        system or server states, then the bytes actually streamed.
    timeout_s : float
        Total time allowed for an http(s) download; other backends take their own timeouts
        through ``storage_options``.
    storage_options : mapping, optional
        Passed to the fsspec filesystem (credentials, endpoints, ...).
    policy : FetchPolicy, optional
        Scheme and root allow-lists and retries of transient failures (default: any
        location, no retry).
    declared_size : int, optional
        The size the message declares; over ``max_bytes`` it is refused before anything is
        opened.

    Yields
    ------
    pathlib.Path
        The file itself for local files; else a temporary copy, deleted afterwards.

    Raises
    ------
    ProductError
        ``bad_uri``, ``forbidden_uri``, ``not_found``, ``unreachable``, ``too_large``,
        ``checksum_mismatch``.
    """
    policy = policy or FetchPolicy()
    local = check_uri(uri, policy)
    _check_declared(uri, declared_size, max_bytes)
    if local is not None:
        if not local.is_file():
            raise ProductError("not_found", f"{uri}: file not found")
        size = local.stat().st_size
        if size > max_bytes:
            raise ProductError(
                "too_large", f"{uri}: {size} bytes exceeds the limit of {max_bytes} bytes"
            )
        if sha256 is not None:
            _verify(uri, sha256_file(local), sha256)
        yield local
        return
    name = Path(urlsplit(uri).path).name or "download"
    if suffix and not name.endswith(suffix):
        name += suffix
    with tempfile.TemporaryDirectory(prefix="insar-fetch-") as tmp:
        dest = Path(tmp) / name
        _download_with_retries(
            uri, dest, max_bytes=max_bytes, timeout_s=timeout_s,
            storage_options=storage_options, policy=policy,
        )
        if sha256 is not None:
            _verify(uri, sha256_file(dest), sha256)
        yield dest


# --------------------------------------------------------------------------- rasters


def sniff_format(head: bytes) -> str | None:
    """``"geotiff"`` or ``"netcdf"`` from a file's first bytes; None when neither.

    TIFF and BigTIFF start ``II*\\0``/``MM\\0*`` (``+`` for BigTIFF); NetCDF-4 is HDF5
    (``\\x89HDF``), classic NetCDF starts ``CDF``.
    """
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "geotiff"
    if head[:4] == b"\x89HDF" or head[:3] == b"CDF":
        return "netcdf"
    return None


def _suffix_format(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith((".tif", ".tiff")):
        return "geotiff"
    if lower.endswith(NETCDF_SUFFIXES):
        return "netcdf"
    return None


def _read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(8)


@contextmanager
def _with_suffix_for(path: Path, fmt: str | None) -> Iterator[Path]:
    """``path`` itself, or a symlink to it whose suffix tells the readers its real format.

    ``read_wrapped_phase`` picks the NetCDF reader by suffix; a NetCDF file named ``.bin``
    (or a GeoTIFF named ``.nc``) gets a correctly named link instead of a copy.
    """
    fmt = fmt or _suffix_format(path.name) or sniff_format(_read_head(path))
    is_netcdf_name = path.suffix.lower() in NETCDF_SUFFIXES
    if fmt is None or (fmt == "netcdf") == is_netcdf_name:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="insar-fetch-") as tmp:
        link = Path(tmp) / (path.stem + _FORMAT_SUFFIX[fmt])
        os.symlink(path.resolve(), link)
        yield link


@contextmanager
def local_raster(
    ref: RasterRef,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    storage_options: Mapping[str, Any] | None = None,
    policy: FetchPolicy | None = None,
) -> Iterator[Path]:
    """Yield a local GeoTIFF/NetCDF path for ``ref``, named so the readers pick its format.

    Local files (absolute paths, ``file://``) are used in place; inline bytes and remote
    files are written to a temporary file (``.tif`` or ``.nc`` from ``ref.format``, the
    name's suffix or the magic bytes) that is deleted when the block ends. ``ref.sha256``
    is verified in every case, ``ref.size_bytes`` (declared) is held against
    ``max_bytes`` before anything is fetched. Options as in :func:`local_file`.

    Raises
    ------
    ProductError
        ``bad_uri``, ``forbidden_uri``, ``not_found``, ``unreachable``, ``too_large``,
        ``checksum_mismatch``.
    """
    if ref.inline is not None:
        if len(ref.inline) > max_bytes:
            raise ProductError(
                "too_large", f"inline raster: {len(ref.inline)} bytes exceeds {max_bytes}"
            )
        _verify("inline raster", hashlib.sha256(ref.inline).hexdigest(), ref.sha256)
        fmt = ref.format or sniff_format(ref.inline[:8]) or "geotiff"
        with tempfile.TemporaryDirectory(prefix="insar-inline-") as tmp:
            path = Path(tmp) / f"inline{_FORMAT_SUFFIX[fmt]}"
            path.write_bytes(ref.inline)
            yield path
        return
    uri = ref.uri or ""
    suffix = _FORMAT_SUFFIX[ref.format] if ref.format else ""
    with (
        local_file(
            uri, suffix=suffix, sha256=ref.sha256, max_bytes=max_bytes, timeout_s=timeout_s,
            storage_options=storage_options, policy=policy, declared_size=ref.size_bytes,
        ) as path,
        _with_suffix_for(path, ref.format) as named,
    ):
        yield named


def fetch_bytes(
    ref: RasterRef,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    storage_options: Mapping[str, Any] | None = None,
    policy: FetchPolicy | None = None,
) -> bytes:
    """The bytes of the file ``ref`` points to (checked against ``ref.sha256``).

    Prefer :func:`local_raster` for readers that take a path; this is for callers that
    want the bytes themselves (hashing, re-publishing, small files).
    """
    if ref.inline is not None:
        if len(ref.inline) > max_bytes:
            raise ProductError(
                "too_large", f"inline raster: {len(ref.inline)} bytes exceeds {max_bytes}"
            )
        _verify("inline raster", hashlib.sha256(ref.inline).hexdigest(), ref.sha256)
        return ref.inline
    with local_file(
        ref.uri or "", sha256=ref.sha256, max_bytes=max_bytes, timeout_s=timeout_s,
        storage_options=storage_options, policy=policy, declared_size=ref.size_bytes,
    ) as path:
        return path.read_bytes()


def load_wrapped_phase(
    ref: RasterRef,
    *,
    allowed_crs: Sequence[str] = ("EPSG:4326",),
    phase_tolerance_rad: float = 0.01,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    storage_options: Mapping[str, Any] | None = None,
    policy: FetchPolicy | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PhaseRaster:
    """Fetch and read a wrapped-phase raster: :func:`local_raster` + ``read_wrapped_phase``.

    Errors name ``ref`` (its URI, or the inline size) rather than a temporary file.
    ``max_pixels`` (rows x cols, from the header, before any pixel is read) refuses
    decompression bombs; the other options are those of :func:`local_raster`.

    Raises
    ------
    ProductError
        The reasons of :func:`local_raster` and of
        :func:`pipelines.raster_io.read_wrapped_phase` (``unreadable``, ``too_large``,
        ``no_crs``, ``wrong_crs``, ``wrong_dtype``, ``not_wrapped_phase``, ``all_nan``, ...).
    """
    with local_raster(
        ref, max_bytes=max_bytes, timeout_s=timeout_s, storage_options=storage_options,
        policy=policy,
    ) as path:
        try:
            return read_wrapped_phase(
                path, allowed_crs=tuple(allowed_crs), phase_tolerance_rad=phase_tolerance_rad,
                max_pixels=max_pixels,
            )
        except ProductError as e:
            message = str(e).replace(str(path), ref.describe())
            raise ProductError(e.reason, message) from e


def no_valid_tiles_error(name: str, min_valid_fraction: float) -> ProductError:
    """The ``no_valid_pixels`` refusal of a raster none of whose tiles has enough data.

    A frame whose every tile is below ``unrest.min_valid_fraction`` finite pixels gives
    the model nothing to score; reporting it as "no unrest" would be a wrong answer, so
    the pipeline dead-letters it with this error instead.

    Parameters
    ----------
    name : str
        How the error names the raster (``RasterRef.describe()``).
    min_valid_fraction : float
        The per-tile threshold no tile reached.

    Returns
    -------
    ProductError
        Reason ``no_valid_pixels``, to raise or to dead-letter.
    """
    return ProductError(
        "no_valid_pixels",
        f"{name}: no tile has at least {min_valid_fraction:.0%} finite pixels "
        "(unrest.min_valid_fraction); the frame is mostly nodata and cannot be scored",
    )


# --------------------------------------------------------------------------- PS points


@dataclass(frozen=True)
class PSBatch:
    """The points of one PS update, as arrays.

    Attributes
    ----------
    pid : ndarray of str, shape (n,)
        Unique point ids.
    longitude, latitude : ndarray of float64, shape (n,)
        Degrees (WGS84), finite.
    dates : tuple of datetime.date, length T
        The update's epochs, increasing.
    displacement_mm : ndarray of float32, shape (n, T)
        Displacement in mm at each epoch; NaN where a point has no value.
    quality : ndarray of float32, shape (n,)
        Per-point quality (EGMS ``temporal_coherence``), NaN when not given.
    """

    pid: np.ndarray
    longitude: np.ndarray
    latitude: np.ndarray
    dates: tuple[date, ...]
    displacement_mm: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.pid)


def _batch_from_inline(msg: PSUpdateMessage) -> PSBatch:
    points = msg.points or ()
    disp = np.array(
        [[np.nan if v is None else v for v in p.displacement_mm] for p in points],
        dtype=np.float32,
    ).reshape(len(points), len(msg.epochs))
    return PSBatch(
        pid=np.array([p.pid for p in points], dtype=str),
        longitude=np.array([p.longitude for p in points], dtype=np.float64),
        latitude=np.array([p.latitude for p in points], dtype=np.float64),
        dates=msg.epochs,
        displacement_mm=disp,
        quality=np.array(
            [np.nan if p.quality is None else p.quality for p in points], dtype=np.float32
        ),
    )


def _numeric(frame: pd.DataFrame, name: str, dtype: type) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan, dtype=dtype)
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype, na_value=np.nan)
    return np.array(values, dtype=dtype)  # a writable copy: pyarrow buffers are read-only


def _batch_from_csv(path: Path, name: str) -> PSBatch:
    try:
        table = read_egms_csv(path, min_epochs=1)
    except ProductError as e:
        raise ProductError(e.reason, str(e).replace(str(path), name)) from e
    return PSBatch(
        pid=np.asarray(table.pid, dtype=str),
        longitude=table.longitude,
        latitude=table.latitude,
        dates=table.dates,
        displacement_mm=table.displacement_mm,  # read_egms_csv already maps inf to NaN
        quality=_numeric(table.attributes, QUALITY_COLUMN, np.float32),
    )


def _batch_from_parquet(path: Path, name: str) -> PSBatch:
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ProductError("unreadable", f"{name}: not a readable Parquet file ({e})") from e
    if "pid" not in frame.columns:
        raise ProductError("no_pid", f"{name}: no 'pid' column; EGMS files identify points by pid")
    date_cols = sorted(str(c) for c in frame.columns if DATE_COLUMN.match(str(c)))
    if not date_cols:
        raise ProductError(
            "no_date_columns",
            f"{name}: no YYYYMMDD displacement columns; EGMS layout has one per epoch",
        )
    try:
        dates = tuple(datetime.strptime(c, "%Y%m%d").date() for c in date_cols)
    except ValueError as e:
        raise ProductError("bad_date_column", f"{name}: a date column is not a date ({e})") from e
    try:
        disp = frame[date_cols].apply(pd.to_numeric, errors="raise").to_numpy(
            np.float32, na_value=np.nan
        )
    except (ValueError, TypeError) as e:
        raise ProductError(
            "non_numeric_displacement", f"{name}: displacement columns hold non-numbers ({e})"
        ) from e
    # pyarrow hands out read-only buffers: build a new array rather than mask in place.
    disp = np.where(np.isfinite(disp), disp, np.float32(np.nan))
    return PSBatch(
        pid=frame["pid"].astype(str).to_numpy(dtype=str),
        longitude=_numeric(frame, "longitude", np.float64),
        latitude=_numeric(frame, "latitude", np.float64),
        dates=dates,
        displacement_mm=disp,
        quality=_numeric(frame, QUALITY_COLUMN, np.float32),
    )


def _check_batch(batch: PSBatch, msg: PSUpdateMessage, name: str) -> None:
    if len(batch) == 0:
        raise ProductError("no_points", f"{name}: no points; an update must carry at least one")
    if batch.dates != msg.epochs:
        raise ProductError(
            "epochs_mismatch",
            f"{name}: file epochs {_span(batch.dates)} differ from the message's epochs "
            f"{_span(msg.epochs)}; the file must hold exactly the epochs the update adds",
        )
    unique, counts = np.unique(batch.pid, return_counts=True)
    if (counts > 1).any():
        dupes = unique[counts > 1]
        raise ProductError(
            "duplicate_pid",
            f"{name}: {len(dupes)} pid(s) appear more than once (e.g. {dupes[0]!r}); "
            "pids identify points in the PS store",
        )
    bad = ~(
        np.isfinite(batch.longitude) & np.isfinite(batch.latitude)
        & (np.abs(batch.longitude) <= 180) & (np.abs(batch.latitude) <= 90)
    )
    if bad.any():
        raise ProductError(
            "bad_coordinates",
            f"{name}: {int(bad.sum())} point(s) without valid longitude/latitude "
            f"(e.g. pid {batch.pid[bad][0]!r}); give WGS84 degrees",
        )


def _span(dates: Sequence[date]) -> str:
    if not dates:
        return "(none)"
    return f"({len(dates)}: {dates[0]}..{dates[-1]})" if len(dates) > 1 else f"({dates[0]})"


def load_ps_points(
    msg: PSUpdateMessage,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    storage_options: Mapping[str, Any] | None = None,
    policy: FetchPolicy | None = None,
) -> PSBatch:
    """The points of a PS update: inline, or from its EGMS-layout CSV or Parquet file.

    Files follow the EGMS layout: ``pid``, ``latitude``, ``longitude``, optional attributes
    (``temporal_coherence`` becomes ``quality``), then one ``YYYYMMDD`` column (mm) per epoch.
    Fetch options as in :func:`local_file`; ``msg.points_size_bytes`` is the declared size.

    Raises
    ------
    ProductError
        Fetch reasons (``forbidden_uri``, ``not_found``, ``unreachable``, ``too_large``,
        ...), file reasons (``unreadable``,
        ``no_pid``, ``no_date_columns``, ``bad_date_column``, ``non_numeric_displacement``),
        and ``no_points``, ``epochs_mismatch`` (the file's epochs are not the message's),
        ``duplicate_pid``, ``bad_coordinates``.
    """
    if msg.points is not None:
        batch = _batch_from_inline(msg)
        _check_batch(batch, msg, f"update {msg.update_id}")
        return batch
    if msg.points_uri is None or msg.points_format not in _PS_SUFFIX:
        raise ProductError(
            "bad_uri",
            f"update {msg.update_id}: needs inline points or points_uri with points_format "
            f"in {tuple(_PS_SUFFIX)}",
        )
    uri = msg.points_uri
    with local_file(
        uri, suffix=_PS_SUFFIX[msg.points_format], max_bytes=max_bytes, timeout_s=timeout_s,
        storage_options=storage_options, policy=policy, declared_size=msg.points_size_bytes,
    ) as path:
        if msg.points_format == "parquet":
            batch = _batch_from_parquet(path, uri)
        else:
            batch = _batch_from_csv(path, uri)
    _check_batch(batch, msg, uri)
    return batch


def write_ps_parquet(path: Path | str, batch: PSBatch) -> Path:
    """Write ``batch`` as Parquet in the EGMS column layout (for tests and benchmarks).

    Columns: ``pid``, ``latitude``, ``longitude``, ``temporal_coherence`` (only when some
    quality is finite), then one float32 ``YYYYMMDD`` column per epoch in mm (NaN = null).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, Any] = {
        "pid": np.asarray(batch.pid, dtype=str),
        "latitude": np.asarray(batch.latitude, dtype=np.float64),
        "longitude": np.asarray(batch.longitude, dtype=np.float64),
    }
    if np.isfinite(batch.quality).any():
        columns[QUALITY_COLUMN] = np.asarray(batch.quality, dtype=np.float32)
    disp = np.asarray(batch.displacement_mm, dtype=np.float32)
    for j, d in enumerate(batch.dates):
        columns[d.strftime("%Y%m%d")] = disp[:, j]
    pd.DataFrame(columns).to_parquet(path, index=False)
    return path

