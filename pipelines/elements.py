"""The small, picklable records that flow between the pipeline's stages.

Beam serialises elements whenever a stage boundary (a GroupByKey) is crossed, so what
travels is kept small: references to the Kafka record a message came from, decoded
messages, tile positions and probabilities. Pixel arrays exist only inside the fused
fetch -> tile -> infer stage and never enter a shuffle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SourceRef:
    """Where a message came from: enough to dead-letter it or cite it in a detection."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes = field(repr=False)

    @property
    def order(self) -> tuple[str, int, int]:
        """Sort key that reproduces the broker's order within a partition."""
        return (self.topic, self.partition, self.offset)

    def as_source(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class Decoded:
    """A message that passed schema validation, with its origin."""

    source: SourceRef
    message: Any  # InterferogramMessage | PSUpdateMessage


@dataclass(frozen=True)
class FrameManifest:
    """Everything the frame decision needs about one interferogram except tile scores."""

    source: SourceRef
    message: Any  # InterferogramMessage
    tiles: tuple[dict[str, Any], ...]  # serving.frame_scoring.tile_record of every tile scored
    shape: tuple[int, int]


@dataclass(frozen=True)
class UpdateManifest:
    """One PS update after it was merged into the store: which points it gets credit for."""

    source: SourceRef
    message: Any  # PSUpdateMessage (points dropped: they are in the store now)
    pid: np.ndarray  # points classified on behalf of this update, in example order
    longitude: np.ndarray
    latitude: np.ndarray
    n_chunks: int
    n_skipped: int  # touched points with too few epochs to classify
