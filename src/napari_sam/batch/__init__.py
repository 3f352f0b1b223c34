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
  removed when their job ends. Where the file system cannot lock (NFS without lockd), jobs run
  without a lock and :func:`run_jobs` logs a warning once per output folder after the run.
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
``progress``, the runners ``embed_runner``, ``segment_runner`` (its options in
``segment_options``),
``auto_runner`` with ``linking``, ``runners`` (``run_job``), ``run`` (``run_jobs``) and
``distributed``. The package imports them on first use of a name (``batch.run_jobs``), so
that the command line's option tables load without torch.
"""

from __future__ import annotations

import importlib

#: Where each public name lives: imported on first use (PEP 562), so that importing one
#: module of the package (the command line's option tables) does not load torch.
_HOMES = {
    "AUTO_KEYS": "napari_sam.batch.auto_runner",
    "LINK_DEFAULTS": "napari_sam.batch.linking",
    "PROPAGATE_DEFAULT": "napari_sam.batch.auto_runner",
    "PROPAGATION_BYTES_PER_VOXEL": "napari_sam.batch.auto_runner",
    "auto_slices": "napari_sam.batch.auto_runner",
    "prepare_auto_work": "napari_sam.batch.auto_runner",
    "Context": "napari_sam.batch.context",
    "Job": "napari_sam.batch.context",
    "JobResult": "napari_sam.batch.context",
    "COMMANDS": "napari_sam.batch.inputs",
    "IMAGE_SUFFIXES": "napari_sam.batch.inputs",
    "WORK_DIR": "napari_sam.batch.inputs",
    "BatchError": "napari_sam.batch.inputs",
    "InputList": "napari_sam.batch.inputs",
    "collect_inputs": "napari_sam.batch.inputs",
    "collect_inputs_with_folders": "napari_sam.batch.inputs",
    "output_path": "napari_sam.batch.inputs",
    "stem_of": "napari_sam.batch.inputs",
    "OutputLock": "napari_sam.batch.jobs",
    "OutputVerdict": "napari_sam.batch.jobs",
    "make_jobs": "napari_sam.batch.jobs",
    "output_state": "napari_sam.batch.jobs",
    "output_verdict": "napari_sam.batch.jobs",
    "LinkPlan": "napari_sam.batch.linking",
    "link_slices": "napari_sam.batch.linking",
    "get_model": "napari_sam.batch.models",
    "model_cache_info": "napari_sam.batch.models",
    "preview_path": "napari_sam.batch.preview",
    "write_preview": "napari_sam.batch.preview",
    "Prompts": "napari_sam.batch.prompts",
    "check_prompts": "napari_sam.batch.prompts",
    "load_prompts": "napari_sam.batch.prompts",
    "prompts_for": "napari_sam.batch.prompts",
    "OpenedImage": "napari_sam.batch.reading",
    "open_image": "napari_sam.batch.reading",
    "run_jobs": "napari_sam.batch.run",
    "finished_meanwhile": "napari_sam.batch.run",
    "output_stamps": "napari_sam.batch.run",
    "run_job": "napari_sam.batch.runners",
    "SEGMENT_KEYS": "napari_sam.batch.segment_options",
    "SEGMENT_OPTIONS": "napari_sam.batch.segment_options",
    "SegmentOption": "napari_sam.batch.segment_options",
    "SliceSource": "napari_sam.io",
    "write_labels_stream": "napari_sam.io",
}

#: The public names: exactly those the table above places.
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:  # a submodule not imported yet (``batch.jobs``)
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
