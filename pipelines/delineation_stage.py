"""The ADA delineation U-Net after a hot spot computation: settings, model call, terrain.

Three things meet here, each kept where it belongs:

* the science, :func:`pipelines.hotspots.delineation.delineate` (density surface and
  terrain grids in, probability map and areas out, with a ``predict`` callable for the
  model);
* the served ``ada_delineator`` model (:data:`serving.signatures.DELINEATION_SIGNATURE`),
  reached through :class:`pipelines.model_endpoint.ModelEndpoint` exactly like the unrest
  and trend models: the configured backend (inprocess, TF-Serving gRPC or REST), the
  process-wide signature-checked client, its circuit breaker, the client's retries, and
  the same inference metrics (:func:`pipelines.model_endpoint.observed_predict`);
* the operator's DEM (``delineation.dem_path``), turned into terrain aspect and slope on
  the hot spot grid by :func:`pipelines.hotspots.terrain.terrain_on_grid`.

:class:`Delineator` is the callable :func:`pipelines.hotspots.engine.compute_hotspots` and
:func:`~pipelines.hotspots.engine.analyse_snapshot` take as ``delineator``. It returns the
:class:`~pipelines.hotspots.delineation.Delineation` and the ``delineation`` block of
``hotspot.v1``.

Failures
--------
* Model server down, model not served, circuit open: the error propagates. In the daemon
  the hot spot stage then fails, the pass fails and nothing is committed or stored (the
  dataset's hot spot state included); the daemon retries the pass with backoff, as when
  the unrest or trend model is down. Delineation is never dropped silently.
* No DEM configured: the U-Net runs on the hot spot map alone. The daemon says so once in
  its log at start-up, and every payload says so (``terrain: "none"`` and a ``note``).
* DEM unusable: caught at start-up by :func:`check_dem` (a configuration error). A DEM that
  is fine but does not cover one dataset's grid gives that dataset the hot spot map alone,
  with a warning in the log and the reason in ``note`` (retrying could not help).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.model_endpoint import ModelEndpoint, observed_predict
from serving.signatures import DELINEATION_CELL_M, DELINEATION_MODEL_NAME

log = logging.getLogger(__name__)

DEFAULT_BATCH = 16
"""256x256 tiles per request (3 inputs x 256 KiB each: about 12 MiB), at most models.max_batch."""

@dataclass(frozen=True)
class DelineationSettings:
    """Everything a process needs to delineate (picklable: travels in PipelineContext).

    Attributes
    ----------
    options : tuple of (str, object)
        The ``delineation`` section's method keys (threshold, overlap, min_area_m2,
        use_slope), kept as plain values so that building a pipeline context does not
        import the geospatial stack; :attr:`params` turns them into
        :class:`pipelines.hotspots.delineation.DelineationParams`.
    endpoint : ModelEndpoint
        Where ``ada_delineator`` is served (the ``models`` section).
    dem_path : str or None
        DEM GeoTIFF; None = the hot spot map alone.
    batch : int
        Tiles per model request (<= ``models.max_batch``).
    """

    options: tuple[tuple[str, Any], ...]
    endpoint: ModelEndpoint
    dem_path: str | None = None
    batch: int = DEFAULT_BATCH

    @property
    def params(self) -> Any:
        """The :class:`~pipelines.hotspots.delineation.DelineationParams` of :attr:`options`."""
        from types import SimpleNamespace

        from pipelines.hotspots.delineation import DelineationParams

        return DelineationParams.from_config(SimpleNamespace(**dict(self.options)))

    @classmethod
    def from_config(cls, config: Any, *, dem_path: Path | str | None = None) -> DelineationSettings:
        """Settings of a :class:`monitor.config.MonitorConfig` (``dem_path`` overrides
        ``delineation.dem_path``), whether or not ``delineation.enabled`` is set."""
        section = config.delineation
        dem = dem_path if dem_path is not None else section.dem_path
        options = section.model_dump(exclude={"enabled", "dem_path"})
        return cls(
            options=tuple(sorted(options.items())),
            endpoint=ModelEndpoint.from_config(config, DELINEATION_MODEL_NAME),
            dem_path=None if dem is None else str(dem),
            batch=max(1, min(DEFAULT_BATCH, config.models.max_batch)),
        )

    def terrain_description(self) -> str:
        """One line for logs and CLI summaries: what the U-Net looks at."""
        if self.dem_path is None:
            return "the hot spot map alone (no DEM)"
        extra = "aspect and slope" if dict(self.options).get("use_slope") else "aspect"
        return f"the hot spot map + terrain {extra} from {self.dem_path}"


def pipeline_settings(config: Any) -> DelineationSettings | None:
    """The daemon's settings: None unless both ``hotspots`` and ``delineation`` are enabled."""
    if not (config.hotspots.enabled and config.delineation.enabled):
        return None
    return DelineationSettings.from_config(config)


def check_dem(dem_path: Path | str) -> None:
    """Start-up check of a DEM: a readable raster with a CRS.

    Raises
    ------
    pipelines.hotspots.terrain.TerrainError
        With what to fix (a ``ValueError``).
    """
    import rioxarray
    import xarray as xr
    from rasterio.errors import RasterioError

    from pipelines.hotspots.terrain import TerrainError

    path = Path(dem_path)
    if not path.is_file():
        raise TerrainError(
            f"DEM {path} not found: set delineation.dem_path to an existing GeoTIFF (or "
            "remove it to delineate from the hot spot map alone)"
        )
    try:
        opened = rioxarray.open_rasterio(path, masked=True)
    except (RasterioError, OSError) as e:
        raise TerrainError(
            f"cannot read DEM {path} as a raster ({e}): set delineation.dem_path to a GeoTIFF"
        ) from e
    try:
        if not isinstance(opened, xr.DataArray):
            raise TerrainError(f"DEM {path} holds several datasets: give a single-band GeoTIFF")
        if opened.rio.crs is None:
            raise TerrainError(
                f"DEM {path} has no CRS: write one into the file (e.g. gdal_edit.py -a_srs "
                "EPSG:<code>) so it can be placed on the hot spot grid"
            )
    finally:
        close = getattr(opened, "close", None)
        if close is not None:
            close()


PredictFn = Callable[[dict[str, np.ndarray]], np.ndarray]


class Delineator:
    """Run the delineation U-Net on one density surface (the engine's ``delineator``).

    Parameters
    ----------
    settings : DelineationSettings
    client : InferenceClient, optional
        A ready, signature-checked client of ``ada_delineator`` (the CLI's, which it
        closes itself); ``model_version`` must then be given. Default: the process-wide
        client of ``settings.endpoint`` (:meth:`ModelEndpoint.load`, behind the circuit
        breaker), loaded on the first call so that a hot spot pass without a density
        surface does not need the model.
    model_version : int, optional
        The version ``client`` serves.
    """

    def __init__(
        self,
        settings: DelineationSettings,
        *,
        client: Any = None,
        model_version: int | None = None,
    ) -> None:
        if client is not None and model_version is None:
            raise ValueError("a client needs its model_version (from check_signature)")
        self.settings = settings
        self._client = client
        self._version = model_version

    def _predict_fn(self) -> tuple[PredictFn, int]:
        endpoint = self.settings.endpoint
        if self._client is not None:
            client, version = self._client, int(self._version or 0)
        else:
            loaded = endpoint.load()  # raises while the server is down: the pass fails
            client, version = loaded.client, loaded.version

        def predict(inputs: dict[str, np.ndarray]) -> np.ndarray:
            outputs = observed_predict(endpoint, client, inputs)
            return np.asarray(outputs["probability"], dtype=np.float32)

        return predict, version

    def _terrain(self, kde: Any) -> tuple[Any, str | None]:
        """Terrain grids on ``kde``'s grid, or None and why a configured DEM was not used."""
        from pipelines.hotspots.terrain import TerrainError, terrain_on_grid

        dem = self.settings.dem_path
        if dem is None:
            return None, None  # delineate's own note says so
        try:
            return terrain_on_grid(dem, kde), None
        except TerrainError as e:
            log.warning(
                "DEM not usable for this hot spot grid: the U-Net sees the hot spot map alone",
                extra={"dem_path": dem, "error": str(e)},
            )
            return None, f"DEM not used ({e}): the U-Net saw the hot spot map alone"

    def __call__(
        self,
        kde: Any,
        *,
        xy: np.ndarray | None = None,
        velocity: np.ndarray | None = None,
        trend_class: np.ndarray | None = None,
        pid: np.ndarray | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Delineate the areas of ``kde``.

        Parameters
        ----------
        kde : xarray.DataArray, dims (y, x)
            The z-weighted density surface (:attr:`HotspotResult.kde`), metric CRS.
        xy : ndarray, shape (n, 2), optional
            The points in the same CRS, m; with ``velocity`` (mm/yr), ``trend_class``
            and ``pid`` (each (n,)) they give the areas their point statistics.

        Returns
        -------
        delineation : pipelines.hotspots.delineation.Delineation
        info : dict
            The ``delineation`` block of ``hotspot.v1``: ``model``, ``model_version``,
            ``inputs`` (the signature inputs that carried data), ``terrain`` (``"dem"`` or
            ``"none"``), ``note`` (str or None) and ``threshold``.

        Raises
        ------
        serving.clients.InferenceError
            The model could not be reached or refused the request (see the module notes).
        """
        from pipelines.hotspots.delineation import delineate

        params = self.settings.params
        predict, version = self._predict_fn()
        terrain, why_not = self._terrain(kde)
        result = delineate(
            kde,
            predict,
            params=params,
            terrain=terrain,
            xy=xy,
            velocity=velocity,
            trend_class=trend_class,
            pid=pid,
            batch=self.settings.batch,
        )
        note = why_not or result.note
        cell = float(result.probability.attrs.get("cell_size_m", DELINEATION_CELL_M))
        if abs(cell - DELINEATION_CELL_M) > 1e-6:
            off_scale = (
                f"hot spot cells of {cell:g} m, the U-Net was trained on {DELINEATION_CELL_M:g} m "
                "(hotspots.kde_cell_m): its areas are less reliable"
            )
            log.warning("delineation outside the trained cell size",
                        extra={"cell_size_m": cell, "trained_cell_size_m": DELINEATION_CELL_M})
            note = f"{note}; {off_scale}" if note else off_scale
        info = {
            "model": self.settings.endpoint.model_name,
            "model_version": version,
            "inputs": list(result.inputs),
            "terrain": "none" if terrain is None else "dem",
            # A DEM that could not be used is the reason, not "no DEM configured".
            "note": note,
            "threshold": float(params.threshold),
        }
        log.info(
            "anomalous deformation areas delineated",
            extra={"areas": len(result.areas), "inputs": info["inputs"],
                   "terrain": info["terrain"], "model_version": version},
        )
        return result, info
