"""File-level batch jobs: inputs, outputs, resume, memory-bounded reading, dask.distributed.

This package is the engine behind the ``napari-sam`` command (:mod:`napari_sam.cli`); it is
part of the core and never imports napari or Qt. It can be used from Python too::

    from napari_sam import batch
    inputs = batch.collect_inputs(["data/*.tif"])
    ctx = batch.Context(command="auto", model="demo", out_dir="out")
    results = batch.run_jobs(batch.make_jobs(inputs, ctx), ctx)

Rules every job follows
-----------------------
* **One output per input** (``out/<stem>_labels.tif`` for ``auto`` and ``segment``,
  ``out/<stem>.zarr`` for ``embed``) with a JSON output metadata file (``<output>.json``, see
  :func:`napari_sam.io.write_output_metadata`).
* **Atomic outputs.** Labels are written to a hidden temporary name and renamed into place; the
  output metadata is written after the output. Before a job starts, its output metadata is
  marked ``"status": "partial"``, so an output whose job was killed at any point is never taken
  as complete: a rerun recomputes it.
* **Resume.** A rerun skips outputs that are complete (output metadata ``complete``, output
  size, input size, mtime and sampled content hash, command and parameters all matching) and
  finishes partial ones: per-slice work (embeddings in a zarr store, per-slice automatic
  segmentations) lives in ``out/.napari-sam-work/`` and is reused, then deleted when the output
  is complete.
* **One bad file never stops the batch.** Every failure becomes a :class:`JobResult` with a
  one-line reason; only ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM from a job scheduler) ends a
  batch early, leaving finished outputs complete and the others resumable.
* **Locks.** A job holds an exclusive ``flock`` on its output while it runs (POSIX), so two
  processes never write the same output. A serial run leaves an output another process is
  writing for the end of its batch and then waits for it (and skips it when the other process
  completed it); on a cluster it comes back ``"busy"``, which is not a success. Lock files are
  removed when their job ends.
* **Bounded memory.** Inputs are read lazily (memory-mapped or through zarr), one slice at a
  time, and memory-mapped pages are released as the job goes
  (:class:`napari_sam.io.SliceSource`). ``embed`` streams embeddings to zarr; ``auto`` segments
  slice by slice, stores each slice's result on disk and writes the label TIFF page by page, so
  its peak memory does not grow with the number of slices (see docs/cli.md, "Memory").
  ``segment`` holds the label volume in memory (Z x Y x X x 2 bytes).
* **Scale-out.** :func:`run_jobs` with ``scheduler=`` (an address) or ``workers=N`` (a
  ``LocalCluster`` of N processes) submits one task per file, or per block of slices of a stack
  with more than ``block_slices`` slices (``embed`` and ``auto``). Each worker process loads a
  model once (:func:`get_model`, a module-level cache) and reuses it for every task.

Modules
-------
``inputs`` (inputs, output names, ``BatchError``), ``prompts`` (prompts files), ``context``
(``Context``, ``Job``, ``JobResult``), ``jobs`` (jobs, resume states, locks, work folders),
``models`` (the per-process model cache), ``reading`` (``open_image``, over
:class:`napari_sam.io.SliceSource`), ``embedding_stores``, ``label_writing``, ``preview``,
``progress``, the runners ``embed_runner``, ``segment_runner`` (and ``SEGMENT_OPTIONS``),
``auto_runner`` with ``linking``, ``runners`` (``run_job``), ``run`` (``run_jobs``) and
``distributed``.
"""

from __future__ import annotations

from napari_sam.batch.auto_runner import (
    AUTO_KEYS,
    LINK_DEFAULTS,
    PROPAGATE_DEFAULT,
    PROPAGATION_BYTES_PER_VOXEL,
    auto_slices,
    prepare_auto_work,
)
from napari_sam.batch.context import Context, Job, JobResult
from napari_sam.batch.inputs import (
    COMMANDS,
    IMAGE_SUFFIXES,
    WORK_DIR,
    BatchError,
    collect_inputs,
    output_path,
    stem_of,
)
from napari_sam.batch.jobs import OutputLock, make_jobs, output_state
from napari_sam.batch.linking import LinkPlan, link_slices
from napari_sam.batch.models import get_model, model_cache_info
from napari_sam.batch.preview import preview_path, write_preview
from napari_sam.batch.prompts import Prompts, check_prompts, load_prompts, prompts_for
from napari_sam.batch.reading import OpenedImage, open_image
from napari_sam.batch.run import run_jobs
from napari_sam.batch.runners import run_job
from napari_sam.batch.segment_runner import SEGMENT_KEYS, SEGMENT_OPTIONS, SegmentOption
from napari_sam.io import SliceSource, write_labels_stream

__all__ = [
    "BatchError",
    "COMMANDS",
    "Prompts",
    "check_prompts",
    "Context",
    "Job",
    "JobResult",
    "SliceSource",
    "collect_inputs",
    "get_model",
    "load_prompts",
    "make_jobs",
    "model_cache_info",
    "output_path",
    "output_state",
    "run_job",
    "run_jobs",
    "write_labels_stream",
    "write_preview",
    # also public (used by the CLI, the tests and scripts)
    "AUTO_KEYS",
    "IMAGE_SUFFIXES",
    "LINK_DEFAULTS",
    "LinkPlan",
    "OpenedImage",
    "OutputLock",
    "PROPAGATE_DEFAULT",
    "PROPAGATION_BYTES_PER_VOXEL",
    "SEGMENT_KEYS",
    "SEGMENT_OPTIONS",
    "SegmentOption",
    "WORK_DIR",
    "auto_slices",
    "link_slices",
    "open_image",
    "prepare_auto_work",
    "preview_path",
    "prompts_for",
    "stem_of",
]
