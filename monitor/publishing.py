"""Turn product files into messages and publish them: ``insar-monitor publish`` and ``replay``.

Operators, backfills and tests publish through here, so every message is built by the
same code and validated against its schema *before* it reaches the broker (a typo in a
backfill fails on the operator's terminal, not in the daemon's dead-letter topic).
Rasters travel by reference (``file://`` URI of the absolute path) unless ``inline``
is asked for and the file is small.

An archive for ``replay`` is a directory tree holding any of:

* LiCSAR-layout interferograms ``<frame>/<yyyymmdd_yyyymmdd>/<pair>.geo.diff_pha.tif``
  (or ``.nc``); the frame id is the grand-parent directory's name;
* PS update files ``<dataset>/<tile>/<name>.csv`` or ``.parquet`` in the EGMS layout;
  their date columns are the epochs they add;
* ready-made ``*.json`` messages (``interferogram.v1`` or ``ps_update.v1``).

They are published in event-time order (an interferogram's secondary date, an update's
last epoch), so a replayed archive reaches the daemon as it would have live.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from pipelines.egms_csv import DATE_COLUMN
from pipelines.messages import (
    InterferogramMessage,
    PSUpdateMessage,
    RasterRef,
    encode_interferogram,
    encode_ps_update,
    parse_message,
)
from pipelines.product_fetch import sha256_file
from pipelines.raster_io import ProductError

PAIR = re.compile(r"^(\d{8})_(\d{8})$")
INLINE_LIMIT_BYTES = 384 * 1024  # base64 grows it by 4/3: stays under the 512 KiB schema cap


@dataclass(frozen=True)
class Outgoing:
    """One message ready for the broker."""

    topic_kind: str  # "interferogram" | "ps_update"
    key: str
    value: bytes
    event_time: date
    label: str  # what to print


def _parse_day(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").date()


def interferogram_message(
    phase_path: Path,
    *,
    frame_id: str | None = None,
    primary: date | None = None,
    secondary: date | None = None,
    product_id: str | None = None,
    coherence_path: Path | None = None,
    region_id: str | None = None,
    volcano_id: str | None = None,
    inline: bool = False,
    checksum: bool = True,
) -> InterferogramMessage:
    """Describe a wrapped-phase raster as ``interferogram.v1``; LiCSAR names fill the gaps.

    Raises
    ------
    ProductError
        The file is missing, too large to inline, or its frame / dates cannot be told.
    """
    phase_path = Path(phase_path).resolve()
    if not phase_path.is_file():
        raise ProductError("not_found", f"{phase_path}: file not found")
    pair_dir = phase_path.parent.name
    m = PAIR.match(pair_dir)
    if (primary is None or secondary is None) and m is None:
        raise ProductError(
            "bad_dates",
            f"{phase_path}: give --primary and --secondary, or use the LiCSAR layout "
            "<frame>/<yyyymmdd_yyyymmdd>/<pair>.geo.diff_pha.tif",
        )
    primary = primary or _parse_day(m.group(1))  # type: ignore[union-attr]
    secondary = secondary or _parse_day(m.group(2))  # type: ignore[union-attr]
    frame_id = frame_id or (phase_path.parent.parent.name if m else None)
    if not frame_id:
        raise ProductError("schema_error", f"{phase_path}: give --frame-id")
    product_id = product_id or f"{frame_id}_{primary:%Y%m%d}_{secondary:%Y%m%d}"
    if inline:
        size = phase_path.stat().st_size
        if size > INLINE_LIMIT_BYTES:
            raise ProductError(
                "inline_too_large",
                f"{phase_path} is {size} bytes; inline carries at most {INLINE_LIMIT_BYTES}. "
                "Publish it by reference (without --inline) from storage the daemon can read.",
            )
        phase = RasterRef(inline=phase_path.read_bytes())
    else:
        phase = RasterRef(
            uri=phase_path.as_uri(), sha256=sha256_file(phase_path) if checksum else None
        )
    coherence = RasterRef(uri=Path(coherence_path).resolve().as_uri()) if coherence_path else None
    return InterferogramMessage(
        product_id=product_id,
        frame_id=frame_id,
        primary_date=primary,
        secondary_date=secondary,
        wrapped_phase=phase,
        coherence=coherence,
        region_id=region_id,
        volcano_id=volcano_id,
        published_at=datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def ps_update_message(
    points_path: Path,
    *,
    dataset_id: str,
    tile_id: str,
    update_id: str | None = None,
) -> PSUpdateMessage:
    """Describe an EGMS-layout CSV or Parquet file of new epochs as ``ps_update.v1``."""
    points_path = Path(points_path).resolve()
    if not points_path.is_file():
        raise ProductError("not_found", f"{points_path}: file not found")
    suffix = points_path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        columns = pq.read_schema(points_path).names
        fmt = "parquet"
    elif suffix == ".csv":
        with points_path.open() as f:
            columns = f.readline().strip().split(",")
        fmt = "egms_csv"
    else:
        raise ProductError("unreadable", f"{points_path}: PS updates are .csv or .parquet files")
    epochs = sorted(_parse_day(c.strip()) for c in columns if DATE_COLUMN.match(c.strip()))
    if not epochs:
        raise ProductError("no_date_columns", f"{points_path}: no YYYYMMDD displacement columns")
    return PSUpdateMessage(
        update_id=update_id or points_path.stem,
        dataset_id=dataset_id,
        tile_id=tile_id,
        epochs=tuple(epochs),
        points_uri=points_path.as_uri(),
        points_format=fmt,
        published_at=datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def outgoing(message: InterferogramMessage | PSUpdateMessage, label: str = "") -> Outgoing:
    """Encode (and so validate) a message for the broker."""
    if isinstance(message, InterferogramMessage):
        return Outgoing(
            "interferogram",
            message.frame_id,
            encode_interferogram(message),
            message.event_time,
            label or message.product_id,
        )
    return Outgoing(
        "ps_update",
        message.store_key,
        encode_ps_update(message),
        message.event_time,
        label or message.update_id,
    )


def scan_archive(root: Path) -> list[Outgoing]:
    """Every publishable product under ``root``, in event-time order (see module docstring).

    Raises
    ------
    ProductError
        For the first file that cannot be described (nothing is published then).
    """
    root = Path(root)
    if not root.is_dir():
        raise ProductError("not_found", f"{root}: not a directory")
    found: list[Outgoing] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = path.name
        if name.endswith((".geo.diff_pha.tif", ".geo.diff_pha.nc")):
            found.append(outgoing(interferogram_message(path), str(path.relative_to(root))))
        elif path.suffix.lower() in (".csv", ".parquet") and not name.endswith(".truth.csv"):
            rel = path.relative_to(root).parts
            if len(rel) < 3:
                raise ProductError(
                    "schema_error",
                    f"{path}: PS update files belong at <dataset>/<tile>/<file> in the archive",
                )
            msg = ps_update_message(path, dataset_id=rel[-3], tile_id=rel[-2])
            found.append(outgoing(msg, str(path.relative_to(root))))
        elif path.suffix.lower() == ".json":
            msg = parse_message(path.read_bytes())
            found.append(outgoing(msg, str(path.relative_to(root))))
    # Stable sort: equal event times keep path order, so a replay is deterministic.
    return sorted(found, key=lambda o: o.event_time)


def publish(
    items: Iterable[Outgoing], settings: object, topics: dict[str, str]
) -> Iterator[tuple[Outgoing, int, int]]:
    """Publish each item (waiting for the broker's ack); yield (item, partition, offset)."""
    from pipelines.kafka_io import KafkaPublisher

    with KafkaPublisher(settings) as publisher:  # type: ignore[arg-type]
        for item in items:
            partition, offset = publisher.publish(
                topics[item.topic_kind], item.value, key=item.key
            )
            yield item, partition, offset
