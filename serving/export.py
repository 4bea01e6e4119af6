"""Export a trained Keras model as a TF-Serving SavedModel with a named signature.

The exported directory is ``<base>/<model_name>/<version>/`` (TF-Serving's layout)
and holds one ``serving_default`` signature whose input and output names, dtypes
and shapes are those of :mod:`serving.signatures`. Pre-processing (NaN masking,
resampling, normalisation) lives inside the served function, so every caller —
gRPC, REST or in-process — sends the same raw tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.signatures import SIGNATURE_NAME, ModelSignature


def export_saved_model(
    model: Any,
    serve_fn: Callable[..., dict[str, Any]],
    signature: ModelSignature,
    base_dir: Path,
    version: int,
) -> Path:
    """Write ``model`` with ``serve_fn`` as ``serving_default`` to ``base_dir/name/version``.

    Parameters
    ----------
    model : keras.Model
        The trained model; tracked so its variables are saved.
    serve_fn : callable
        Takes the signature's inputs as positional tensors, in the order of
        ``signature.inputs``, and returns a dict keyed by ``signature.output_names()``.
    signature : ModelSignature
        The contract the export must satisfy (checked after writing).
    base_dir : Path
        Model base path (the one TF-Serving's ``base_path`` points at, without the name).
    version : int
        Positive model version; TF-Serving serves the highest by default.

    Returns
    -------
    Path
        The version directory written.
    """
    import keras
    import tensorflow as tf

    if version < 1:
        raise ValueError(f"model version must be >= 1, got {version}")
    out = Path(base_dir) / signature.model_name / str(version)
    if out.exists():
        raise FileExistsError(f"{out} exists: bump the version instead of overwriting a model")
    specs = [tf.TensorSpec(t.shape, getattr(tf, t.dtype), name=t.name) for t in signature.inputs]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE_NAME, fn=serve_fn, input_signature=specs)
    archive.write_out(str(out), verbose=False)
    check_saved_model(out, signature)
    return out


def check_saved_model(path: Path, signature: ModelSignature) -> None:
    """Raise ``ValueError`` unless the SavedModel at ``path`` serves ``signature``."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if SIGNATURE_NAME not in loaded.signatures:
        raise ValueError(f"{path}: no '{SIGNATURE_NAME}' signature")
    fn = loaded.signatures[SIGNATURE_NAME]
    _, kwargs = fn.structured_input_signature
    got_inputs = {k: (v.dtype.name, tuple(v.shape.as_list())) for k, v in kwargs.items()}
    want_inputs = {t.name: (t.dtype, t.shape) for t in signature.inputs}
    if got_inputs != want_inputs:
        raise ValueError(f"{path}: inputs {got_inputs} differ from the contract {want_inputs}")
    got_outputs = {k: v.dtype.name for k, v in fn.structured_outputs.items()}
    want_outputs = {t.name: t.dtype for t in signature.outputs}
    if got_outputs != want_outputs:
        raise ValueError(f"{path}: outputs {got_outputs} differ from the contract {want_outputs}")


def directory_sha256(path: Path) -> str:
    """A stable sha256 over every file of a SavedModel directory (relative path + bytes)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()
