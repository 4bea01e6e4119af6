"""The pipeline's stages as composable PTransforms, one job each.

::

    KafkaRecord --DecodeMessages--> interferogram / ps_update / dead letter
    interferogram --ScoreInterferograms--> fetch + tile (one fused stage; pixels stay here)
                                           -> RunInference(unrest) -> per-frame decision
    ps_update --ClassifyPSUpdates--> merge into the PS store (per tile, broker order)
                                     -> RunInference(trend) -> class changes vs the store
    detections, dead letters --PublishOnce--> Kafka (+ archive files), each id once

The same transforms run in the embedded bounded passes (FnApiRunner, see
:mod:`pipelines.bounded`) and in an unbounded Flink/Dataflow job
(:mod:`pipelines.streaming`). State lives outside Beam — the PS store and the
emitted-id ledger — and is read and written by key, so neither runner needs Beam state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from pipelines.context import PipelineContext
from pipelines.elements import Decoded, FrameManifest, SourceRef, UpdateManifest
from pipelines.kafka_io import KafkaRecord
from pipelines.model_handlers import SeriesExample, TrendModelHandler, UnrestModelHandler
from pipelines.raster_io import ProductError

log = logging.getLogger(__name__)

DEAD = "dead_letter"
INTERFEROGRAM = "interferogram"
PS_UPDATE = "ps_update"
MANIFEST = "manifest"
TOUCHED = "touched"
METRICS_NAMESPACE = "insar_monitor"


def dead_letter_for(source: SourceRef, reason: str, error: str, stage: str) -> dict[str, Any]:
    """A ``dead_letter.v1`` payload for the message at ``source``."""
    from pipelines.messages import dead_letter

    return dead_letter(
        source.topic,
        source.partition,
        source.offset,
        source.key,
        source.value,
        reason,
        error,
        stage,
    )


def source_of(record: KafkaRecord) -> SourceRef:
    return SourceRef(record.topic, record.partition, record.offset, record.key, record.value)


# --- decode ------------------------------------------------------------------------------
class _DecodeFn(beam.DoFn):
    def __init__(self) -> None:
        self.decoded = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "messages_decoded")
        self.rejected = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "messages_rejected")

    def process(self, record: KafkaRecord):
        from pipelines.messages import InterferogramMessage, parse_message

        source = source_of(record)
        try:
            message = parse_message(record.value)
        except ProductError as e:
            self.rejected.inc()
            log.warning(
                "message rejected",
                extra={"reason": e.reason, "topic": record.topic, "offset": record.offset},
            )
            yield pvalue.TaggedOutput(DEAD, dead_letter_for(source, e.reason, str(e), "decode"))
            return
        self.decoded.inc()
        tag = INTERFEROGRAM if isinstance(message, InterferogramMessage) else PS_UPDATE
        yield pvalue.TaggedOutput(tag, Decoded(source, message))


class DecodeMessages(beam.PTransform):
    """KafkaRecord -> tagged ``interferogram`` / ``ps_update`` Decoded, or ``dead_letter``."""

    def expand(self, records):
        return records | "Decode" >> beam.ParDo(_DecodeFn()).with_outputs(
            DEAD, INTERFEROGRAM, PS_UPDATE
        )


# --- interferograms ----------------------------------------------------------------------
class _FetchAndTileFn(beam.DoFn):
    """Load the wrapped phase by reference, tile it, emit tiles keyed by (product, index)."""

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.tiles = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "tiles")

    def process(self, item: Decoded):
        from pipelines.product_fetch import load_wrapped_phase, no_valid_tiles_error
        from pipelines.tiling import tile_frame
        from serving.frame_scoring import tile_record

        msg = item.message
        try:
            raster = load_wrapped_phase(
                msg.wrapped_phase,
                allowed_crs=list(self.ctx.allowed_crs),
                phase_tolerance_rad=self.ctx.phase_tolerance_rad,
                max_bytes=self.ctx.max_raster_bytes,
                max_pixels=self.ctx.max_raster_pixels,
                policy=self.ctx.fetch_policy(),
            )
            tiles = tile_frame(
                raster.phase,
                overlap=self.ctx.tile_overlap,
                min_valid_fraction=self.ctx.min_valid_fraction,
                transform=raster.transform,
            )
        except ProductError as e:
            yield pvalue.TaggedOutput(DEAD, dead_letter_for(item.source, e.reason, str(e), "fetch"))
            return
        except ValueError as e:  # too small / not 2-D: the product, not the daemon, is wrong
            yield pvalue.TaggedOutput(
                DEAD, dead_letter_for(item.source, "untileable", str(e), "tile")
            )
            return
        if not tiles:  # a "no unrest" decision on no data would be a wrong answer
            error = no_valid_tiles_error(msg.wrapped_phase.describe(), self.ctx.min_valid_fraction)
            yield pvalue.TaggedOutput(
                DEAD, dead_letter_for(item.source, error.reason, str(error), "tile")
            )
            return
        key = _product_key(item)
        records = tuple(tile_record(t) for t in tiles)
        yield pvalue.TaggedOutput(
            MANIFEST, (key, FrameManifest(item.source, msg, records, raster.phase.shape))
        )
        self.tiles.inc(len(tiles))
        for index, tile in enumerate(tiles):
            yield ((key, index), tile.data)


def _product_key(item: Decoded) -> str:
    # The offset disambiguates a product published twice under the same id (a correction).
    return f"{item.message.product_id}|{item.source.partition}|{item.source.offset}"


class _DecideFrameFn(beam.DoFn):
    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.frames = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "frames_scored")
        self.unrest = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "frames_unrest")

    def process(self, element):
        _, grouped = element
        manifests = list(grouped[MANIFEST])
        scores = sorted(grouped["scores"])  # (tile index, probability, model id)
        if manifests:  # none when the product was dead-lettered: nothing to decide
            yield from self._decide(manifests[0], scores)

    def _decide(self, manifest: FrameManifest, scores: list):
        from serving.frame_scoring import decide_frame

        if len(scores) != len(manifest.tiles):
            raise RuntimeError(
                f"{manifest.message.product_id}: {len(scores)} tile scores for "
                f"{len(manifest.tiles)} tiles (a lost inference result would be a wrong answer)"
            )
        frame = decide_frame(
            list(manifest.tiles),
            [p for _, p, _ in scores],
            threshold=self.ctx.threshold,
            min_firing_tiles=self.ctx.min_firing_tiles,
        )
        model = self.ctx.unrest.load()
        self.frames.inc()
        if frame.unrest:
            self.unrest.inc()
        payload = build_unrest_detection(manifest, frame, model.name, model.version, self.ctx)
        if frame.unrest:
            write_frame_quicklook(manifest, payload, self.ctx)
        yield payload


def build_unrest_detection(
    manifest: FrameManifest, frame: Any, model_name: str, model_version: int, ctx: PipelineContext
) -> dict[str, Any]:
    """The ``detection.v1`` payload of one frame decision (built by the contract module)."""
    from pipelines.messages import RecordRef, detection_unrest

    return detection_unrest(
        manifest.message,
        frame,
        model_name=model_name,
        model_version=model_version,
        source=RecordRef(*manifest.source.order),
        min_firing_tiles=ctx.min_firing_tiles,
        frame_bounds=frame_extent(manifest.tiles),
    )


def frame_extent(tiles: Sequence[Mapping[str, Any]]) -> tuple[float, float, float, float] | None:
    """left, bottom, right, top covering every tile that has bounds (None if none has)."""
    boxes = [t["bounds"] for t in tiles if t.get("bounds") is not None]
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes), min(b[1] for b in boxes),
        max(b[2] for b in boxes), max(b[3] for b in boxes),
    )


class ScoreInterferograms(beam.PTransform):
    """Decoded interferograms -> ``detection.v1`` dicts (main) and dead letters (``DEAD``)."""

    def __init__(self, ctx: PipelineContext) -> None:
        super().__init__()
        self.ctx = ctx

    def expand(self, decoded):
        ctx = self.ctx
        fetched = decoded | "FetchAndTile" >> beam.ParDo(_FetchAndTileFn(ctx)).with_outputs(
            DEAD, MANIFEST, main="tiles"
        )
        scores = (
            fetched.tiles
            | "ScoreTiles"
            >> RunInference(
                KeyedModelHandler(UnrestModelHandler(ctx.unrest, ctx.unrest_batch_size))
            )
            | "KeyByProduct"
            >> beam.MapTuple(lambda key, pred: (key[0], (key[1], pred.inference, pred.model_id)))
        )
        detections = (
            {MANIFEST: fetched[MANIFEST], "scores": scores}
            | "JoinFrame" >> beam.CoGroupByKey()
            | "DecideFrame" >> beam.ParDo(_DecideFrameFn(ctx))
        )
        return {"detections": detections, DEAD: fetched[DEAD]}


# --- PS updates --------------------------------------------------------------------------
class _MergeIntoStoreFn(beam.DoFn):
    """Per store tile: merge the pass's updates in broker order, write the series once, then
    emit every touched point's whole series for classification.

    A point touched by several updates of one pass is classified once, on behalf of the
    last update that touched it (the series is the same for all of them by then).
    """

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.points = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "ps_points_merged")
        self.duplicates = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "ps_updates_repeated")

    def setup(self) -> None:
        from pipelines.ps_store import PSStore

        self.store = PSStore(self.ctx.ps_store)

    def process(self, element):
        from pipelines.ps_store import merge_epochs
        from pipelines.series_packing import pack_series

        store_key, items = element
        items = sorted(items, key=lambda d: d.source.order)
        dataset_id, tile_id = items[0].message.dataset_id, items[0].message.tile_id
        series = self.store.read_series(dataset_id, tile_id)
        applied: list[tuple[Decoded, np.ndarray]] = []
        applied_updates: set[str] = set()
        for item in items:
            msg = item.message
            if msg.update_id in applied_updates:
                # The same update published twice in one pass: one detection, as across
                # passes (where the ledger drops the second). Merging it again would be a
                # no-op, and would take the points' credit from the first copy.
                self.duplicates.inc()
                continue
            try:
                from pipelines.product_fetch import load_ps_points

                batch = load_ps_points(
                    msg, max_bytes=self.ctx.max_raster_bytes, policy=self.ctx.fetch_policy()
                )
                series, rows = merge_epochs(
                    series,
                    dataset_id,
                    tile_id,
                    batch.pid,
                    batch.longitude,
                    batch.latitude,
                    batch.dates,
                    batch.displacement_mm,
                    batch.quality,
                )
            except ProductError as e:
                yield pvalue.TaggedOutput(
                    DEAD, dead_letter_for(item.source, e.reason, str(e), "ps_load")
                )
                continue
            except ValueError as e:
                yield pvalue.TaggedOutput(
                    DEAD, dead_letter_for(item.source, "bad_points", str(e), "ps_merge")
                )
                continue
            applied.append((item, np.asarray(rows)))
            applied_updates.add(msg.update_id)
            self.points.inc(len(rows))
        if series is None or not applied:
            return
        self.store.write_series(series)

        last_owner = np.full(len(series.pid), -1)
        for k, (_, rows) in enumerate(applied):
            last_owner[rows] = k
        days = series.time_days()
        chunk = max(1, self.ctx.trend_batch_size)
        for k, (item, rows) in enumerate(applied):
            own = rows[last_owner[rows] == k]
            keep, disp, time = pack_series(series.displacement_mm[own], days, self.ctx.min_epochs)
            classified = own[keep]
            n_chunks = (len(classified) + chunk - 1) // chunk
            msg = item.message
            manifest = UpdateManifest(
                source=item.source,
                message=_without_points(msg),
                pid=series.pid[classified],
                longitude=series.longitude[classified],
                latitude=series.latitude[classified],
                n_chunks=n_chunks,
                n_skipped=int(len(own) - keep.sum()),
            )
            yield pvalue.TaggedOutput(MANIFEST, (store_key, manifest))
            for c in range(n_chunks):
                s = slice(c * chunk, (c + 1) * chunk)
                yield (
                    (store_key, item.source.order, c),
                    SeriesExample(disp[s], time[s]),
                )


def _without_points(msg: Any) -> Any:
    import dataclasses

    return dataclasses.replace(msg, points=None) if getattr(msg, "points", None) else msg


class _RecordClassesFn(beam.DoFn):
    """Per store tile: compare new classes with the stored ones, emit one detection per
    update, and store the new classes.

    Beam publishes the detections after this DoFn returns, so the daemon can die with the
    classes stored and the detections not yet published. The store therefore remembers,
    per point, which update set its class and what the class was before
    (:meth:`PSClasses.before`): a replayed update reports the same changes again, and the
    ledger drops them if they had been published after all."""

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.changes = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "ps_class_changes")
        self.classified = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "ps_points_classified")

    def setup(self) -> None:
        from pipelines.ps_store import PSStore

        self.store = PSStore(self.ctx.ps_store)

    def process(self, element):
        from pipelines.ps_store import PSClasses

        _, grouped = element
        manifests: list[UpdateManifest] = sorted(grouped[MANIFEST], key=lambda m: m.source.order)
        if not manifests:
            return
        probs_by_chunk = {(order, c): (p, mid) for order, c, p, mid in grouped["scores"]}
        first = manifests[0].message
        classes = self.store.read_classes(first.dataset_id, first.tile_id)
        if classes is None:
            classes = PSClasses.empty(first.dataset_id, first.tile_id)
        model = self.ctx.trend.load()
        out = []
        for m in manifests:
            chunks = [probs_by_chunk[(m.source.order, c)][0] for c in range(m.n_chunks)]
            probs = np.concatenate(chunks) if chunks else np.zeros((0, 5), np.float32)
            if len(probs) != len(m.pid):
                raise RuntimeError(
                    f"update {m.message.update_id}: {len(probs)} classifications for "
                    f"{len(m.pid)} points"
                )
            new_class = probs.argmax(axis=1).astype(np.int8) if len(probs) else np.zeros(0, np.int8)
            new_prob = probs.max(axis=1) if len(probs) else np.zeros(0, np.float32)
            previous = classes.before(m.pid, m.message.update_id)
            changed = previous != new_class
            out.append(build_ps_detection(m, previous, new_class, new_prob, changed, model))
            classes = classes.with_updates(
                m.pid, new_class, new_prob, np.full(len(m.pid), m.message.update_id)
            )
            self.changes.inc(int(changed.sum()))
            self.classified.inc(len(m.pid))
        yield from out
        self.store.write_classes(classes)
        for m in manifests:
            # Tells the hot-spot stage which store tiles changed, once classes are stored.
            yield pvalue.TaggedOutput(
                TOUCHED,
                (
                    m.message.dataset_id,
                    {
                        "update_id": m.message.update_id,
                        "tile_id": m.message.tile_id,
                        **m.source.as_source(),
                    },
                ),
            )


def build_ps_detection(
    manifest: UpdateManifest,
    previous: np.ndarray,
    new_class: np.ndarray,
    new_prob: np.ndarray,
    changed: np.ndarray,
    model: Any,
) -> dict[str, Any]:
    """The ``detection.v1`` payload of one PS update's classification."""
    from pipelines.messages import RecordRef, detection_ps
    from serving.signatures import TREND_CLASSES

    counts = np.bincount(new_class.astype(int), minlength=len(TREND_CLASSES))
    changes = [
        {
            "pid": str(manifest.pid[i]),
            "longitude": float(manifest.longitude[i]),
            "latitude": float(manifest.latitude[i]),
            "previous_class": None if previous[i] < 0 else TREND_CLASSES[int(previous[i])],
            "new_class": TREND_CLASSES[int(new_class[i])],
            "probability": round(float(new_prob[i]), 5),
        }
        for i in np.flatnonzero(changed)
    ]
    return detection_ps(
        manifest.message,
        model_name=model.name,
        model_version=model.version,
        source=RecordRef(*manifest.source.order),
        n_points_classified=len(manifest.pid),
        n_points_skipped=int(manifest.n_skipped),
        class_counts=dict(zip(TREND_CLASSES, counts.tolist(), strict=True)),
        changes=changes,
        # Class names come from TREND_CLASSES and values from typed arrays just above.
        check_every_change=False,
    )


class ClassifyPSUpdates(beam.PTransform):
    """Decoded PS updates -> ``detection.v1`` dicts (main) and dead letters (``DEAD``)."""

    def __init__(self, ctx: PipelineContext) -> None:
        super().__init__()
        self.ctx = ctx

    def expand(self, decoded):
        ctx = self.ctx
        merged = (
            decoded
            | "KeyByStoreTile" >> beam.Map(lambda d: (d.message.store_key, d))
            | "GroupByStoreTile" >> beam.GroupByKey()
            | "MergeIntoStore"
            >> beam.ParDo(_MergeIntoStoreFn(ctx)).with_outputs(DEAD, MANIFEST, main="examples")
        )
        scores = (
            merged.examples
            | "ClassifySeries"
            >> RunInference(KeyedModelHandler(TrendModelHandler(ctx.trend, 16)))
            | "KeyByStoreTileAgain"
            >> beam.MapTuple(
                lambda key, pred: (key[0], (key[1], key[2], pred.inference, pred.model_id))
            )
        )
        recorded = (
            {MANIFEST: merged[MANIFEST], "scores": scores}
            | "JoinUpdate" >> beam.CoGroupByKey()
            | "RecordClasses"
            >> beam.ParDo(_RecordClassesFn(ctx)).with_outputs(TOUCHED, main="detections")
        )
        return {"detections": recorded.detections, DEAD: merged[DEAD], TOUCHED: recorded[TOUCHED]}


class _HotspotFn(beam.DoFn):
    """Per dataset: recompute hot spots and ADAs for the store tiles this pass touched.

    With ``ctx.delineation`` the delineation U-Net outlines areas on the density surface
    too, through the served ``ada_delineator`` (:mod:`pipelines.delineation_stage`). When
    that model cannot be reached the error fails the pass like any inference stage's: the
    dataset's state is not written, nothing is committed, and the daemon retries later.
    """

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.computed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "hotspot_computations")
        self.delineated = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, "hotspot_delineations"
        )

    def setup(self) -> None:
        from pipelines.hotspots.engine import HotspotStateStore
        from pipelines.ps_store import PSStore

        self.store = PSStore(self.ctx.ps_store)
        self.states = HotspotStateStore(self.ctx.ps_store)
        self.delineator = None
        if self.ctx.delineation is not None:
            from pipelines.delineation_stage import Delineator

            # Loads the model on its first call, through the endpoint's cached client.
            self.delineator = Delineator(self.ctx.delineation)

    def process(self, element):
        from pipelines.hotspots.engine import compute_hotspots, write_products
        from pipelines.messages import validate

        dataset_id, triggers = element
        triggers = sorted(triggers, key=lambda t: (t["topic"], t["partition"], t["offset"]))
        tiles = sorted({t["tile_id"] for t in triggers})
        state = self.states.read(dataset_id)
        result, new_state = compute_hotspots(
            state, self.store, tiles, triggers, self.ctx.hotspots, delineator=self.delineator
        )
        if result.delineation is not None:
            self.delineated.inc()
        root = self.ctx.archive_path()
        if root is not None:
            directory = root / "hotspots" / _safe_name(result.payload["hotspot_id"])
            result.payload["products"] = write_products(result, directory)
        validate("hotspot.v1", result.payload)
        self.states.write(new_state)
        self.computed.inc()
        yield result.payload


class ComputeHotspots(beam.PTransform):
    """``(dataset_id, trigger)`` per updated store tile -> one ``hotspot.v1`` per dataset."""

    def __init__(self, ctx: PipelineContext) -> None:
        super().__init__()
        self.ctx = ctx

    def expand(self, touched):
        return (
            touched
            | "GroupByDataset" >> beam.GroupByKey()
            | "HotspotsAndAreas" >> beam.ParDo(_HotspotFn(self.ctx))
        )


# --- sinks -------------------------------------------------------------------------------
class _PublishOnceFn(beam.DoFn):
    """Publish each payload to ``topic`` unless the ledger says it already was.

    The broker's acknowledgement comes before the ledger write (see pipelines/ledger.py for
    the one window this leaves and how start-up closes it). With ``archive_dir`` every
    payload is also written as ``<archive>/<kind>/<id>.json`` (same id, same file).
    """

    def __init__(self, ctx: PipelineContext, topic: str) -> None:
        self.ctx = ctx
        self.topic = topic
        self.published = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"published.{topic}")
        self.skipped = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"duplicates.{topic}")

    def setup(self) -> None:
        from pipelines.kafka_io import KafkaPublisher
        from pipelines.ledger import EmittedLedger

        self.publisher = KafkaPublisher(self.ctx.kafka)
        self.ledger = EmittedLedger(self.ctx.ledger_path)

    def start_bundle(self) -> None:
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.pending_ids: set[str] = set()

    def process(self, payload: dict[str, Any]):
        from pipelines.ledger import output_id

        oid = output_id(payload)
        # Pending ids too: a product published twice can reach one bundle twice.
        if oid in self.pending_ids or self.ledger.seen(self.topic, oid):
            self.skipped.inc()
            return
        self.pending.append((oid, payload))
        self.pending_ids.add(oid)
        if len(self.pending) >= 500:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        from pipelines.messages import to_bytes

        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self._archive(batch)
        items = [(self._key(p), to_bytes(p)) for _, p in batch]
        self.publisher.publish_many(self.topic, items)  # returns after every ack
        _maybe_crash_after_publish()
        self.ledger.record(self.topic, [oid for oid, _ in batch])
        self.published.inc(len(batch))
        for _, payload in batch:
            if payload.get("schema") == "dead_letter.v1":
                # Reason codes are a small fixed set (docs/messages.md): fit for a label.
                beam.metrics.Metrics.counter(
                    METRICS_NAMESPACE, f"dead_letter.{payload.get('reason', 'unknown')}"
                ).inc()

    @staticmethod
    def _key(payload: dict[str, Any]) -> bytes | None:
        """Topic key of docs/messages.md: product id, store tile, or the original key."""
        if "product_id" in payload:
            return str(payload["product_id"]).encode()
        if payload.get("schema") == "hotspot.v1":
            return str(payload["dataset_id"]).encode()
        if "dataset_id" in payload and "tile_id" in payload:
            return f"{payload['dataset_id']}/{payload['tile_id']}".encode()
        key = payload.get("source", {}).get("key")
        return None if key is None else str(key).encode()

    def _archive(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        root = self.ctx.archive_path()
        if root is None:
            return
        for oid, payload in batch:
            kind = payload.get("kind") or str(payload.get("schema", "dead_letter")).split(".")[0]
            path = root / kind / f"{_safe_name(oid)}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(payload, indent=1))
            tmp.replace(path)

    def teardown(self) -> None:
        for closer in ("publisher", "ledger"):
            obj = getattr(self, closer, None)
            if obj is not None:
                obj.close()


FAULT_EXIT_AFTER_PUBLISH = "INSAR_MONITOR_FAULT_EXIT_AFTER_PUBLISH"


def _maybe_crash_after_publish() -> None:
    """Fault injection for the crash-recovery tests: die like a SIGKILL right after the
    broker acknowledged outputs, before the ledger and the offsets know (the worst moment).
    Set the environment variable to the exit status to use; never set in production."""
    import os

    status = os.environ.get(FAULT_EXIT_AFTER_PUBLISH)
    if status:
        os._exit(int(status))


def _safe_name(oid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in oid)


def write_frame_quicklook(
    manifest: FrameManifest, payload: dict[str, Any], ctx: PipelineContext
) -> None:
    """PNG of the phase with the fired tiles next to the archived detection.

    Re-reads the raster (only frames flagged unrest get a picture); a failure is logged and
    never costs the detection.
    """
    root = ctx.archive_path()
    if root is None or not ctx.quicklooks:
        return
    path = root / payload["kind"] / f"{_safe_name(payload['detection_id'])}.png"
    try:
        from monitor.quicklook import plot_frame_score
        from pipelines.product_fetch import load_wrapped_phase

        raster = load_wrapped_phase(
            manifest.message.wrapped_phase,
            allowed_crs=list(ctx.allowed_crs),
            phase_tolerance_rad=ctx.phase_tolerance_rad,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_frame_score(raster.phase, payload["frame"], path, title=payload["product_id"])
    except Exception as e:  # a picture must never cost a detection
        log.warning("quicklook failed", extra={"path": str(path), "error": str(e)})


class PublishOnce(beam.PTransform):
    """Publish output payloads to a topic, each id at most once across replays."""

    def __init__(self, ctx: PipelineContext, topic: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.topic = topic

    def expand(self, payloads):
        return payloads | beam.ParDo(_PublishOnceFn(self.ctx, self.topic))


# --- the whole graph ---------------------------------------------------------------------
def monitor_graph(records, ctx: PipelineContext) -> None:
    """Attach every stage after a PCollection of :class:`KafkaRecord` (any runner)."""
    decoded = records | "DecodeMessages" >> DecodeMessages()
    frames = decoded[INTERFEROGRAM] | "ScoreInterferograms" >> ScoreInterferograms(ctx)
    ps = decoded[PS_UPDATE] | "ClassifyPSUpdates" >> ClassifyPSUpdates(ctx)
    detections = (frames["detections"], ps["detections"]) | "AllDetections" >> beam.Flatten()
    dead = (decoded[DEAD], frames[DEAD], ps[DEAD]) | "AllDeadLetters" >> beam.Flatten()
    _ = detections | "PublishDetections" >> PublishOnce(ctx, ctx.detection_topic)
    _ = dead | "PublishDeadLetters" >> PublishOnce(ctx, ctx.dlq_topic)
    if ctx.hotspots is not None:
        hotspots = ps[TOUCHED] | "ComputeHotspots" >> ComputeHotspots(ctx)
        _ = hotspots | "PublishHotspots" >> PublishOnce(ctx, ctx.hotspot_topic)
