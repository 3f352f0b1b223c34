"""What a batch job that ran out of memory tells the user: the failure in a few words and the
options of its command that lower its memory, then to rerun the same command (the slices and
embeddings it finished are kept: :func:`napari_sam.batch.runners.run_job` leaves the work
folder and the embedding store of a failed job in place)."""

from __future__ import annotations

from napari_sam.batch.context import Context
from napari_sam.memory import out_of_memory_words

__all__ = ["lost_workers_reason", "out_of_memory_reason"]


def _lower_options(ctx: Context) -> list[str]:
    """The options of ``ctx.command`` that lower its peak memory, from the settings in use."""
    options = []
    if ctx.command == "auto":
        from napari_sam.batch.label_writing import default_points_per_batch

        ppb = ctx.params.get("points_per_batch") or default_points_per_batch(ctx) or 64
        if ppb > 8:
            options.append(f"--points-per-batch {max(8, ppb // 4)}")
        if ctx.params.get("propagate", True):
            options.append("--no-propagate (a stack's label volumes are held in memory)")
    if ctx.batch_size > 1:
        options.append("--batch-size 1")
    if ctx.slice_workers > 1:
        options.append("--threads 1")
    return options


def out_of_memory_reason(exc: BaseException, ctx: Context) -> str:
    """One line for a job of ``ctx`` that failed with ``exc``, an out-of-memory error
    (:func:`napari_sam.memory.is_out_of_memory`): what happened and what to do."""
    options = _lower_options(ctx)
    lower = (f"lower what it holds at once ({', '.join(options)}), " if options else "")
    return (f"{out_of_memory_words(exc)}: this file needs more memory than is free here (or "
            f"than this job's memory limit allows); {lower}run fewer files at once (fewer "
            "--workers, or other napari-sam commands on this machine), or free memory (close "
            "other programs, ask the cluster for more), then rerun the same command: the "
            "slices already done are kept")


def lost_workers_reason(ctx: Context) -> str:
    """One line for a file of ``ctx`` whose cluster task failed because every worker that ran
    it died (dask's ``KilledWorker``): most often killed for memory (the operating system's
    out-of-memory killer, dask's memory limit of the worker, a cluster job's limit)."""
    options = _lower_options(ctx)
    lower = f", lower what each holds at once ({', '.join(options)})" if options else ""
    return ("task failed on the cluster: every worker that ran it died (killed, most often "
            "for memory: the operating system's out-of-memory killer, the worker's memory "
            "limit, or the cluster job's); give each worker more memory: fewer --workers per "
            f"machine (each holds its own model and slices), smaller --block-slices{lower}; "
            "then rerun the same command: the slices already done are kept")
