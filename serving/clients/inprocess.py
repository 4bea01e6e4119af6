"""Embedded inference: load the SavedModel into this process and call it directly.

The default backend where no TF-Serving is deployed (batch jobs, a laptop, this CI).
It loads ``<model_base>/<model_name>/<version>/`` exactly as TF-Serving lays models
out, calls the ``serving_default`` signature, and reports metadata in the same dict
format as the gRPC and REST clients. :class:`Servable` is also what
:mod:`serving.local_server` serves, so the in-process and server paths run the
same code on the same graph.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from serving.clients.base import (
    InferenceClient,
    InvalidInputError,
    Metadata,
    ModelUnavailableError,
    SignatureMismatchError,
)
from serving.signatures import SIGNATURE_NAME

logger = logging.getLogger(__name__)


def available_versions(model_base: Path, model_name: str) -> list[int]:
    """Versions found under ``model_base/model_name`` (numeric subdirectories), ascending."""
    root = Path(model_base) / model_name
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def resolve_version(model_base: Path, model_name: str, version: int | None) -> int:
    """Return ``version`` if it exists, else the highest when ``version`` is None.

    Raises
    ------
    ModelUnavailableError
        No such model directory or version.
    """
    versions = available_versions(model_base, model_name)
    if not versions:
        raise ModelUnavailableError(
            f"no versions of model '{model_name}' under {Path(model_base) / model_name}: "
            "export it with serving.export.export_saved_model or fix --model-base"
        )
    if version is None:
        return versions[-1]
    if version not in versions:
        raise ModelUnavailableError(
            f"model '{model_name}' has no version {version} (found {versions})"
        )
    return version


class Servable:
    """One loaded SavedModel version and its callable signature.

    Parameters
    ----------
    model_name : str
        Served name.
    version : int
        Version number (the directory name).
    path : Path
        The version directory.
    signature_name : str
        Signature to expose.

    Raises
    ------
    SignatureMismatchError
        The SavedModel has no such signature.
    """

    def __init__(
        self, model_name: str, version: int, path: Path, signature_name: str = SIGNATURE_NAME
    ) -> None:
        import tensorflow as tf

        self.model_name = model_name
        self.version = version
        self.path = Path(path)
        self.signature_name = signature_name
        # Keep the loaded object alive: the concrete function references its variables.
        self._loaded = tf.saved_model.load(str(path))
        if signature_name not in self._loaded.signatures:
            raise SignatureMismatchError(
                model_name,
                [
                    f"{path}: no signature '{signature_name}' "
                    f"(has {sorted(self._loaded.signatures)})"
                ],
            )
        self._fn = self._loaded.signatures[signature_name]
        _, kwargs = self._fn.structured_input_signature
        self.input_specs: dict[str, Any] = dict(kwargs)
        self.output_specs: dict[str, Any] = dict(self._fn.structured_outputs)
        logger.info(
            "loaded servable model=%s version=%d path=%s",
            model_name,
            version,
            path,
            extra={"event": "servable_loaded", "model": model_name, "version": version},
        )

    def parameter_count(self) -> int:
        """Number of scalars in the SavedModel's variables (weights and statistics)."""
        return int(sum(int(np.prod(v.shape)) for v in self._loaded.variables))

    def metadata(self) -> Metadata:
        """Metadata dict (see :mod:`serving.clients.base`) of this signature."""

        def describe(spec: Any) -> dict[str, Any]:
            shape = None if spec.shape.rank is None else list(spec.shape.as_list())
            return {"dtype": spec.dtype.name, "shape": shape}

        return {
            "model_name": self.model_name,
            "version": self.version,
            "signature_name": self.signature_name,
            "inputs": {k: describe(v) for k, v in self.input_specs.items()},
            "outputs": {k: describe(v) for k, v in self.output_specs.items()},
        }

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the signature.

        Raises
        ------
        InvalidInputError
            Missing/extra input names, wrong dtype or incompatible shape, with the
            expected names/dtypes in the message.
        """
        import tensorflow as tf

        missing = sorted(set(self.input_specs) - set(inputs))
        extra = sorted(set(inputs) - set(self.input_specs))
        if missing or extra:
            raise InvalidInputError(
                f"model '{self.model_name}' v{self.version} expects inputs "
                f"{sorted(self.input_specs)}; missing {missing}, unexpected {extra}"
            )
        tensors = {}
        for name, spec in self.input_specs.items():
            arr = np.asarray(inputs[name])
            if arr.dtype != spec.dtype.as_numpy_dtype:
                raise InvalidInputError(
                    f"input '{name}' of model '{self.model_name}' must be {spec.dtype.name}, "
                    f"got {arr.dtype}"
                )
            if not spec.shape.is_compatible_with(arr.shape):
                raise InvalidInputError(
                    f"input '{name}' of model '{self.model_name}' must have shape "
                    f"{spec.shape.as_list()} (None = any), got {list(arr.shape)}"
                )
            tensors[name] = tf.constant(arr)
        try:
            out = self._fn(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise InvalidInputError(
                f"model '{self.model_name}' v{self.version} rejected the inputs: {e}"
            ) from e
        return {k: v.numpy() for k, v in out.items()}


class InProcessInferenceClient(InferenceClient):
    """Run a SavedModel from ``<model_base>/<model_name>/<version>/`` in this process.

    Parameters
    ----------
    model_name : str
        Model directory name under ``model_base`` (a key of ``SIGNATURES``).
    model_base : str or Path
        TF-Serving style base directory holding ``<model_name>/<version>/``.
    version : int or None
        Version to load; None = the highest present.
    signature_name : str
        Signature to call.
    max_batch_rows : int or None
        See :class:`~serving.clients.base.InferenceClient`.

    Raises
    ------
    ModelUnavailableError
        The model or version is not on disk.

    Notes
    -----
    The model loads in the constructor (a disk read, no network) so a wrong path fails
    at start-up rather than on the first item.
    """

    def __init__(
        self,
        model_name: str,
        model_base: str | Path,
        *,
        version: int | None = None,
        signature_name: str = SIGNATURE_NAME,
        max_batch_rows: int | None = None,
    ) -> None:
        super().__init__(
            model_name,
            version=version,
            signature_name=signature_name,
            max_batch_rows=max_batch_rows,
        )
        self.model_base = Path(model_base)
        resolved = resolve_version(self.model_base, model_name, version)
        self._lock = threading.Lock()
        self._servable: Servable | None = Servable(
            model_name, resolved, self.model_base / model_name / str(resolved), signature_name
        )

    @classmethod
    def from_version_dir(cls, version_dir: str | Path, **kwargs: Any) -> InProcessInferenceClient:
        """Client for an export at ``<model_base>/<model_name>/<version>/`` given by path.

        Evaluations and tests name a model by its directory; this reads the model name
        and version off the TF-Serving layout so they use the same client as the pipeline.
        """
        path = Path(version_dir)
        if not path.name.isdigit():
            raise ValueError(f"{path}: expected <model_base>/<model_name>/<version> directory")
        return cls(path.parent.name, path.parent.parent, version=int(path.name), **kwargs)

    @property
    def servable(self) -> Servable:
        """The loaded model; raises once the client is closed."""
        if self._servable is None:
            raise ModelUnavailableError(f"client for '{self.model_name}' is closed")
        return self._servable

    def _predict_batch(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.servable.run(inputs)

    def _fetch_metadata(self) -> Metadata:
        return self.servable.metadata()

    def close(self) -> None:
        with self._lock:
            self._servable = None
