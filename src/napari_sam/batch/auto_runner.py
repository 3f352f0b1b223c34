"""The ``auto`` job (segment everything): each slice segmented and saved in the work folder
(:func:`auto_slices`, resumable, also run by blocks on a cluster), then linked across slices
(:mod:`napari_sam.batch.linking`) and either written page by page, or propagated through the
stack from each object's largest slice (what :func:`napari_sam.segment_everything` does)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, as_completed, wait
from pathlib import Path

import numpy as np

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.embedding_stores import (
    announce_tiling,
    embed_store,
    stack_embeddings,
    stack_tiling,
    user_embeddings,
)
from napari_sam.batch.jobs import check_input_unchanged, work_dir
from napari_sam.batch.label_writing import (
    axes_record,
    finish_labels,
    label_metadata,
    model_record,
    parameters_in_effect,
    summary_info,
)
from napari_sam.batch.linking import LINK_DEFAULTS, LinkPlan, final_slices, link_slices
from napari_sam.batch.preview import preview_from_arrays
from napari_sam.batch.progress import JobProgressBar, ObjectSliceBar
from napari_sam.batch.reading import OpenedImage, announce_colour_planes, open_image
from napari_sam.batch.saved_work import (
    MARKER,
    auto_work_key,
    recorded_key,
    same_key,
    saved_auto_work,
)
from napari_sam.memory import available_memory
from napari_sam.words import size_words

#: Parameters of :func:`napari_sam.segment_everything` the CLI passes through per slice.
AUTO_KEYS = (
    "points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
    "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
    "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area",
    "min_visible_fraction", "fill_gaps", "rescue_margin",
)


#: Stacks: propagate each linked object through the stack (segment_everything's default).
PROPAGATE_DEFAULT = True


def auto_work_dir(job: Job) -> Path:
    """The folder of an ``auto`` job's per-slice results (``<work>/auto``)."""
    return work_dir(job) / "auto"


def prepare_auto_work(job: Job, ctx: Context, key: dict | None = None) -> Path:
    """Create (or keep) the per-slice work folder of an ``auto`` job; idempotent.

    The folder is reused only when it was made for the same input (size, mtime, sampled
    content; wherever it is now: a moved file keeps its slices), command,
    model weights (the id of a checkpoint file or of the bundled demo model: other weights
    at the same path, or an older version's demo) and parameters of the per-slice
    segmentation (linking and propagation parameters may differ: a run that ran out of
    memory while propagating can be rerun with ``--no-propagate`` without segmenting the
    slices again); otherwise it is emptied first. ``key``: the job's
    :func:`~napari_sam.batch.saved_work.auto_work_key`, when the caller has it (the input's
    content is sampled once).
    """
    work = auto_work_dir(job)
    key = auto_work_key(job, ctx) if key is None else key
    if not same_key(recorded_key(work), key):
        nio.remove_path(work)
        work.mkdir(parents=True, exist_ok=True)
        nio.write_json_atomic(work / MARKER, key)
    return work


def adopt_older_record(job: Job, ctx: Context, key: dict) -> None:
    """Keep the slices of a work folder whose record an older napari-sam wrote: before
    2026-12-07 its ``tiling`` was the ``--tiling`` option (absent for ``auto``), not the
    tiling in effect (:func:`~napari_sam.batch.saved_work.auto_work_key`). A record that is
    ``key`` written that older way (the same option on the same input and model chose the
    same tiling) is rewritten as ``key``, so its slices are kept (were: discarded,
    ``recomputed: parameters changed: tiling off -> [1024, 128]``, for a tiled ``auto`` run
    interrupted before the upgrade).

    Parameters
    ----------
    job, ctx : Job, Context
        The job (its work folder) and the run's context (``ctx.tiling``: the option).
    key : dict
        This run's work key (the tiling in effect in its signature).
    """
    work = auto_work_dir(job)
    recorded = recorded_key(work)
    if recorded is None or same_key(recorded, key):
        return
    sig = {k: v for k, v in key["signature"].items() if k != "tiling"}
    if ctx.tiling != "auto":  # (as Context.signature records it)
        sig["tiling"] = ctx.tiling
    if pathless(recorded) == pathless({**key, "signature": sig}):  # (strict: None not absent)
        nio.write_json_atomic(work / MARKER, key)


def pathless(key: dict) -> dict:
    """``key`` as JSON keeps it (tuples are lists), its input without the path."""
    key = json.loads(json.dumps(key))
    if isinstance(key.get("input"), list):
        key["input"] = key["input"][1:]
    return key


def saved_slices(job: Job, ctx: Context, n: int | None = None,
                 key: dict | None = None) -> dict:
    """What an interrupted run left in the job's per-slice folder, before
    :func:`prepare_auto_work` keeps or empties it
    (:func:`~napari_sam.batch.saved_work.saved_auto_work`; ``n``: the job's slices; ``key``:
    its :func:`~napari_sam.batch.saved_work.auto_work_key`, when the caller has it)."""
    return saved_auto_work(auto_work_dir(job), auto_work_key(job, ctx) if key is None else key,
                           n)


def _slice_file(work: Path, z: int) -> Path:
    return work / f"z{z:06d}.npz"


def _save_slice(work: Path, z: int, labels: np.ndarray, scores: np.ndarray) -> None:
    path = _slice_file(work, z)
    tmp = nio.tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, labels=labels, scores=scores)
        os.replace(tmp, path)
    except BaseException:
        nio.remove_path(tmp)
        raise


def _load_slice(work: Path, z: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(_slice_file(work, z), allow_pickle=False) as d:
        return d["labels"], d["scores"]


def _auto_result(res) -> tuple[np.ndarray, np.ndarray]:
    """(labels (Y, X) with ids 1..n, predicted IoU per id (n + 1,)) of a 2D result."""
    labels = np.asarray(res.labels)
    n = int(labels.max()) if labels.size else 0
    scores = np.full(n + 1, np.nan, np.float32)
    for rec in res.records:
        if 0 < int(rec.id) <= n:
            scores[int(rec.id)] = float(rec.predicted_iou)
    dtype = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
    return labels.astype(dtype, copy=False), scores


class _TileProgress:
    """The progress of a tiled 2D image, counted in windows (its one slice takes minutes when
    large: 121 windows of a 2048 px image): ``windows`` encoded, then ``windows`` segmented,
    each a phase of its own on a :class:`~napari_sam.batch.progress.JobProgressBar` (their
    paces differ some 30-fold), else one count of ``2 * windows``. Without windows (0: a
    stack, or an untiled image) every callback is None."""

    def __init__(self, progress, windows: int):
        self.progress, self.windows = progress, windows if progress is not None else 0
        self.phases = self.windows and hasattr(progress, "phase")
        if self.windows and hasattr(progress, "set_unit"):
            progress.set_unit("window")
        self.encoding = self._phase("encoding", 0) if self.windows else None
        self.segmenting = self._phase("segmenting", self.windows) if self.windows else None
        self._started = ""

    def _phase(self, name: str, offset: int):
        def report(done: int, total: int) -> None:
            if not self.phases:
                return self.progress(offset + done, 2 * self.windows)
            if self._started != name:
                self._started = name
                self.progress.phase(name, self.windows)
            return self.progress(done, self.windows)
        return report

    def done(self) -> None:
        if self.phases:
            self.progress(self.windows, self.windows)
        else:
            self.progress(2 * self.windows, 2 * self.windows)


class _SliceProgress:
    """The progress of a stack's slices segmented, reported from the worker threads; on a
    tiled stack, counted in their windows (slices x windows: a 2048 px slice is 121 windows
    and takes minutes; the bar sat at "0/20 slice" that long)."""

    def __init__(self, progress, slices: int, windows: int):
        self.progress, self.windows = progress, windows if progress is not None else 0
        self.total = slices * (self.windows or 1)
        self._done: dict[int, int] = {}  # slice -> its windows (or 1) done
        self._lock = threading.Lock()
        if self.windows and hasattr(progress, "set_unit"):
            progress.set_unit("window")
        if progress is not None:
            progress(0, self.total)

    def windows_done(self, z: int, done: int) -> None:
        """``done`` windows of slice ``z`` are segmented (a tiled stack; else nothing)."""
        if self.windows:
            self._count(z, min(done, self.windows))

    def slice_done(self, z: int) -> None:
        if self.progress is not None:
            self._count(z, self.windows or 1)

    def _count(self, z: int, done: int) -> None:
        with self._lock:
            self._done[z] = done
            self.progress(sum(self._done.values()), self.total)


def _segment_slice(slice_emb, limits, image: np.ndarray, model, ctx: Context,
                   n_slices: int, progress=None):
    """segment_everything on one slice exactly as its stack path does (the slice's embedding
    ``slice_emb``, the volume-wide contrast ``limits``, constant slices empty; a slice of a
    stack of ``n_slices`` slices rescues masks as ``segment_stack`` does); ``progress(done,
    total)`` counts the windows of a tiled slice."""
    from napari_sam import automatic
    from napari_sam.automatic.params import AutomaticParams

    params = {k: ctx.params[k] for k in AUTO_KEYS if ctx.params.get(k) is not None}
    params["rescue_margin"] = automatic.rescue_margin_for(
        params.get("rescue_margin", AutomaticParams.rescue_margin), n_slices)
    if ctx.tiling != "auto":  # else the engine's default
        params["tiling"] = ctx.tiling
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if automatic.is_constant(image):
        return automatic.empty_result(image.shape[:2], None)
    foreground = ctx.params.get("foreground")
    fg = automatic.auto_foreground(image) if foreground == "auto" else None
    if params.get("crop_n_layers", 0) > 0:  # crops are re-embedded from the image
        return automatic.segment_everything(image, model, contrast_limits=limits,
                                            foreground=fg, device=ctx.device, keep_masks=False,
                                            progress=progress, **params)
    return automatic.segment_everything(slice_emb, model, foreground=fg, device=ctx.device,
                                        image=image, contrast_limits=limits,
                                        keep_masks=False, progress=progress, **params)


def run_slices(todo: list[int], batch_size: int, embedded, segment, workers: int = 1,
               stop: threading.Event | None = None) -> None:
    """Embed the slices ``todo`` in batches in this thread and segment each in ``workers``.

    ``embedded(batch)`` returns ``[(z, embedding, image), ...]`` (called in this thread, one
    batch after the other: the same encoder batches whatever ``workers`` is, so the same
    results); ``segment(z, embedding, image)`` runs in a pool of ``workers`` threads, each with one torch
    thread (a descheduled worker does not hold the others up, unlike OpenMP threads of one
    operation), at most ``2 * workers`` slices waiting (bounded memory). With one worker
    everything runs in this thread. The first error of a worker is raised here. When this
    thread stops (Ctrl-C, an error), ``stop`` is set before the workers are waited for:
    ``segment`` checks it (a tiled image's one slice takes minutes; Ctrl-C waited for it, and
    a second Ctrl-C aborted the process).
    """
    import torch

    from napari_sam.decode_pool import serial_decoding

    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    if workers <= 1:
        with torch.inference_mode():
            for batch in batches:
                for args in embedded(batch):
                    segment(*args)
        return

    def task(args) -> None:
        torch.set_num_threads(1)  # also what threads started later begin with: reset below
        with torch.inference_mode(), serial_decoding():  # the workers share the cores already
            segment(*args)

    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="napari-sam-slice")
    pending: set = set()
    try:
        for batch in batches:
            with torch.inference_mode():
                ready = embedded(batch)
            for args in ready:
                pending.add(pool.submit(task, args))
            while len(pending) > 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()
        for f in as_completed(pending):
            f.result()
    except BaseException:
        if stop is not None:
            stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)  # this thread's count, and new threads' again


def auto_slices(job: Job, ctx: Context, model, indices: Iterable[int] | None = None,
                progress: Callable[[int, int], None] | None = None,
                keep_embeddings: bool = False, block_store: Path | None = None,
                hashes: dict[int, int] | None = None,
                opened: OpenedImage | None = None) -> dict[int, int]:
    """Stage 1 of ``auto``: segment every slice in ``indices`` whose result is not saved yet.

    Each slice's labels (ids 1..n) and predicted IoUs go to ``<work>/z000123.npz`` (written
    atomically), so an interrupted job, or several dask tasks each given a block of slices,
    only compute missing slices. The slices are embedded in this thread, batch after batch,
    and segmented by ``ctx.slice_workers`` threads at once (:func:`run_slices`; the same
    results for any number). Returns ``{slice: n_objects}`` of the slices computed now.
    ``keep_embeddings``: a stack's embeddings go to the job's embedding store (the
    ``--embeddings`` store, else its work folder), for propagation to reuse; otherwise they
    live in memory only (unless an ``--embeddings`` store can be reused). ``block_store``
    (the blocks of a cluster run, see :func:`auto_prepare_task`): each computed slice's
    features go to that store's feature chunk and its pixel hash to ``hashes``, for the
    final task, the only writer of the store's hash array. ``opened``: the input as the caller
    opened it (:func:`run_auto` opens it once per job); without it, it is checked and opened
    here (the blocks of a cluster run).
    """
    from napari_sam.embeddings import StackEmbeddings, slice_hash
    from napari_sam.tiled_stack import embed

    work = auto_work_dir(job)
    if opened is None:
        opened = open_image(job.input, ctx)
    n = len(opened.stack)
    wanted = range(n) if indices is None else [int(i) for i in indices]
    todo = [z for z in wanted if not _slice_file(work, z).exists()]
    done_now: dict[int, int] = {}
    if not todo and block_store is None:
        return done_now
    store = (embed_store(job, ctx, model) if keep_embeddings and not opened.is2d
             else user_embeddings(job, ctx, model))  # (None: the embeddings live in memory)
    tiling = None if block_store is not None else stack_tiling(ctx, model, opened.stack.shape)
    e = int(model.embedding_size)  # a batch of slices stays in memory, every window of it
    held = max(2, ctx.batch_size) * (1 if tiling is None else len(tiling)) * 256 * e * e * 4
    emb = embed(opened.stack, model, store=store, batch_size=ctx.batch_size, device=ctx.device,
                cache_size=max(2, ctx.batch_size), cache_bytes=held, tiling=tiling)
    announce_tiling(job, ctx, emb)
    if isinstance(emb, StackEmbeddings) and n > 1:
        # computed by several tasks, maybe over several runs (resumed): in whole slices per
        # thread (not a tiled image's windows: up to 5x slower, docs/cli.md "CPU threads")
        emb.whole_slices = True
    group = None
    if block_store is not None:
        import zarr

        group = zarr.open_group(str(block_store), mode="r+")
        if hashes is not None:  # slices an interrupted run of this block finished
            _claim_stored(group, emb, sorted(set(wanted) - set(todo)), hashes)
    if not todo:
        return done_now
    tiles = _TileProgress(progress, len(tiling) if tiling is not None and n == 1 else 0)
    counted = _SliceProgress(progress, len(todo), len(tiling) if tiling and n > 1 else 0)
    lock = threading.Lock()
    stop = threading.Event()  # set when this thread stops: the workers' slices stop too

    def segmenting(done: int, of: int, z: int) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # this thread's Ctrl-C (or error): not a result
        if tiles.segmenting is not None:
            tiles.segmenting(done, of)
        else:
            counted.windows_done(z, done)

    def finish(z: int, labels: np.ndarray, scores: np.ndarray) -> None:
        _save_slice(work, z, labels, scores)
        with lock:
            done_now[z] = int(labels.max()) if labels.size else 0
            if tiles.windows:
                tiles.done()
            else:
                counted.slice_done(z)

    def segment(z: int, slice_emb, image: np.ndarray) -> None:
        res = _segment_slice(slice_emb, emb.contrast_limits, image, model, ctx,
                             n_slices=emb.shape[0],
                             progress=lambda done, of: segmenting(done, of, z))
        finish(z, *_auto_result(res))

    def embedded(batch: list[int]):  # in this thread only: the embeddings and the reader
        emb.compute(batch, **({"progress": tiles.encoding} if tiles.windows else {}))
        out = [(z, emb[z], np.asarray(opened.stack[z])) for z in batch]
        if group is not None:  # before the slice counts as done
            for z, e, _ in out:
                group["features"][z] = e.features.cpu().numpy().astype(np.float16)
                hashes[z] = slice_hash(emb.slice_image(z))
        return out

    try:
        run_slices(todo, emb.batch_size, embedded, segment, ctx.slice_workers, stop)
    finally:
        opened.stack.release()
    return done_now


def _claim_stored(group, emb, done: list[int], hashes: dict[int, int]) -> None:
    """Put into ``hashes`` the pixel hashes of the ``done`` slices whose features are in the
    block store ``group`` (written before a slice counts as done, so an interrupted run's
    finished slices have them): the final task records them instead of encoding those slices
    again (in other batches than the blocks did)."""
    from napari_sam.embeddings import slice_hash

    for z in done:
        if np.any(np.asarray(group["features"][z])):
            hashes[z] = slice_hash(emb.slice_image(z))


#: Peak memory of propagation in ``auto`` per voxel of the stack (linked and propagated label
#: volumes and their relabelling): 17 bytes measured on a (48, 384, 384) stack, plus the int32
#: copy of the linked labels that a split at necks makes (4), rounded up.
PROPAGATION_BYTES_PER_VOXEL = 24


def _check_propagation_memory(opened: OpenedImage, time_point: int | None = None) -> None:
    """Fail before any work when propagating this stack (a movie's volume at ``time_point``:
    the time points are propagated one at a time) would not fit in memory."""
    shape = opened.label_shape
    need = int(np.prod(shape, dtype=np.int64)) * PROPAGATION_BYTES_PER_VOXEL
    free = available_memory()  # also under a cgroup's (SLURM's) or ulimit -v's limit
    what = "stack" if time_point is None else "movie's volume at each time point"
    if free is not None and need > free:
        raise ValueError(
            f"propagating the objects of this {' x '.join(map(str, shape))} {what} needs about "
            f"{size_words(need)} of memory for its label volumes, more than the "
            f"{size_words(free)} available here (or under this job's memory limit); use "
            f"--no-propagate (linked 2D masks, constant "
            f"memory), or a machine with more memory"
        )


def run_auto(job: Job, ctx: Context, model) -> dict:
    """Run an ``auto`` job: segment the slices not saved yet, link them across slices, then
    write the labels page by page (or propagate, :func:`_auto_propagate`), their output
    metadata and preview. Returns ``{"objects": n}``.

    The input is opened once, for its slices and for its header (the labels' shape and voxel
    size); :func:`napari_sam.batch.runners.run_job` checked it before reading the output's
    state."""
    from napari_sam import __version__

    propagate = bool(ctx.params.get("propagate", PROPAGATE_DEFAULT))
    try:
        opened = open_image(job.input, ctx, check=False)
    except Exception:
        check_input_unchanged(job)  # a file changed meanwhile: that, not how it reads now
        raise
    if propagate and not opened.is2d:
        _check_propagation_memory(opened, ctx.time_point)
    announce_colour_planes(job, ctx, opened)  # how the file is read: before the work on it
    key = auto_work_key(job, ctx, stack_tiling(ctx, model, opened.stack.shape))  # as auto_slices
    adopt_older_record(job, ctx, key)  # (its record of the --tiling option: the same slices)
    saved = saved_slices(job, ctx, len(opened.stack), key)  # what an interrupted run left
    work = prepare_auto_work(job, ctx, key)
    resumed = saved["kept"]  # (the slices the kept work folder holds)
    bar = JobProgressBar(ctx, f"{job.name}: segment everything")
    try:
        auto_slices(job, ctx, model, progress=bar, keep_embeddings=propagate, opened=opened)
    finally:
        bar.close()
    # a file still growing or replaced: its slices read and its header are not the data it
    # holds now (a change from here on is seen by the next run: the output records ``read``)
    read = check_input_unchanged(job)
    n = len(opened.stack)
    link = {k: ctx.params.get(k, v) for k, v in LINK_DEFAULTS.items()}
    if opened.is2d:
        link["min_z_extent"] = 1
    elif propagate:
        return {**_auto_propagate(job, ctx, model, work, opened, link, resumed), "resume": saved}
    plan = link_slices(lambda z: _load_slice(work, z), n, **link)
    max_id = plan.n_objects
    areas = np.zeros(max_id + 1, np.int64)
    zmin = np.full(max_id + 1, n)
    zmax = np.full(max_id + 1, -1)

    def slices():
        for z, out in enumerate(final_slices(plan, lambda z: _load_slice(work, z)[0], n)):
            counts = np.bincount(out.ravel(), minlength=max_id + 1)
            areas[:] += counts[: max_id + 1]
            present = np.flatnonzero(counts[: max_id + 1])
            zmin[present] = np.minimum(zmin[present], z)
            zmax[present] = np.maximum(zmax[present], z)
            yield out

    meta = label_metadata(job, ctx, model)
    if nio.write_kind(job.output) in ("tiff", "ome-tiff"):
        nio.write_labels_stream(job.output, slices(), shape=opened.label_shape, max_id=max_id,
                                axes=opened.label_axes, pixel_size=opened.pixel_size,
                                unit=opened.unit or "um", metadata=meta,
                                time_interval=opened.time_interval)
    else:  # npy / zarr outputs are assembled in memory
        vol = np.stack(list(slices()))
        nio.write_labels(job.output, vol[0] if opened.is2d else vol, axes=opened.label_axes,
                         pixel_size=opened.pixel_size, unit=opened.unit or "um", metadata=meta,
                         overwrite=True, time_interval=opened.time_interval)
    records = [
        {"id": oid, "slice_range": None if opened.is2d else [int(zmin[oid]), int(zmax[oid])],
         "area": int(areas[oid]), "score": plan.scores.get(oid)}
        for oid in range(1, max_id + 1) if areas[oid] > 0
    ]
    nio.write_output_metadata(job.output, model=model_record(ctx, model), version=__version__,
                      parameters=ctx.signature(), objects=records, input_path=job.input,
                      input_record=read,
                      extra={**axes_record(ctx, opened), "slices": n,
                             "resumed_slices": resumed, "link": link},
                      parameters_in_effect=parameters_in_effect(ctx, model, opened))
    if ctx.preview:
        preview_from_arrays(job, opened, lambda z: _preview_slice(plan, work, z), len(records))
    opened.stack.release()
    return {"objects": len(records), **summary_info(opened), "resume": saved}


def _auto_propagate(job: Job, ctx: Context, model, work: Path, opened: OpenedImage,
                    link: dict, resumed: int) -> dict:
    """Stages 2 and 3 of ``auto`` on a stack with propagation (what ``segment_everything``
    does): link the saved slices (every object kept), propagate each linked object from the
    slice where it is largest, then drop objects spanning fewer than ``min_z_extent`` slices.
    The labels are assembled in memory, as for ``segment``."""
    from napari_sam.automatic import finite_mean, propagate_objects

    n = len(opened.stack)
    plan = link_slices(lambda z: _load_slice(work, z), n, **{**link, "min_z_extent": 1})
    linked = np.stack(list(final_slices(plan, lambda z: _load_slice(work, z)[0], n)))
    extra = {"slices": n, "resumed_slices": resumed, "link": link}
    if plan.n_objects == 0:  # an empty trace: report says there was nothing to propagate
        extra.update(auto_trace(linked, opened, {}, {}))
        info = finish_labels(job, ctx, model, opened, linked, {}, extra)
        opened.stack.release()
        return info
    emb = stack_embeddings(job, ctx, model, opened, note=False)  # stored by stage 1 (or blocks)
    axis_kind = "t" if opened.label_axes.startswith("T") else "z"
    bar = ObjectSliceBar(ctx, f"{job.name}: propagate", n)

    saved_scores: dict[int, np.ndarray] = {}

    def seed_score(z: int, oid: int) -> float:  # the saved score of its 2D mask on slice z
        ids = np.flatnonzero(plan.luts[z] == oid)
        if not ids.size:
            return float("nan")
        if z not in saved_scores:  # read only the slice's scores, not its labels
            with np.load(_slice_file(work, z), allow_pickle=False) as d:
                saved_scores[z] = d["scores"]
        return float(saved_scores[z][ids[0]])

    found: dict = {}  # each object's stop reasons and seed slice, for its trace
    try:
        labels, _, per_slice, stats = propagate_objects(
            emb, linked, int(link["min_z_extent"]), axis_kind, bar, seed_score, trace=found
        )
    finally:
        bar.close()
    scores = {oid: finite_mean(v.values()) for oid, v in per_slice.items()}
    top = int(labels.max())
    labels = labels.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)
    extra.update(propagation=stats, **auto_trace(labels, opened, per_slice, found))
    info = finish_labels(job, ctx, model, opened, labels, scores, extra)
    opened.stack.release()
    return info


def auto_trace(labels: np.ndarray, opened: OpenedImage, per_slice: dict, found: dict) -> dict:
    """What the sidecar of a propagated ``auto`` output holds for ``napari-sam report``, as
    ``segment``'s does: ``{"stop_reasons": {"id": {"up"|"down": reason}}, "trace": ...}``
    (:func:`napari_sam.trace.propagation_trace`; every object of ``labels`` (Z, Y, X) under its
    label value, its seed slice, where its largest 2D detection was, as the annotated one).

    ``per_slice``: ``{id: {slice: predicted IoU}}``; ``found``: what
    :func:`napari_sam.automatic.propagate_objects` put in its ``trace`` dict. The same as
    ``segment_everything(..., trace=True).trace`` (:func:`napari_sam.trace.automatic_trace`)."""
    from napari_sam.trace import automatic_trace

    return automatic_trace(labels, opened.stack, per_slice, found)


def _preview_slice(plan: LinkPlan, work: Path, z: int) -> np.ndarray:
    """Final labels of slice z (what was written), recomputed from the saved slices."""
    return plan.slice_labels(z, lambda k: _load_slice(work, k)[0])
