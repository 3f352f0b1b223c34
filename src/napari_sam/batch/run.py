"""Running a batch: every job serially in this process, or on a dask.distributed cluster
(:func:`run_jobs`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from napari_sam.batch.context import Context, Job, JobResult
from napari_sam.batch.distributed import run_distributed
from napari_sam.batch.jobs import OutputLock, job_output_state, output_stamp, unlockable_text
from napari_sam.batch.progress import stderr_is_terminal
from napari_sam.batch.runners import record_result, run_job

logger = logging.getLogger("napari_sam.batch")


def run_jobs(
    jobs: Sequence[Job],
    ctx: Context,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    block_slices: int | None = None,
    on_result: Callable[[JobResult], None] | None = None,
    on_wait: Callable[[Job, int | None], None] | None = None,
    note_unlockable: bool = True,
) -> list[JobResult]:
    """Run every job serially, or on a dask.distributed cluster; return results in input order.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``); the workers need
        napari-sam-stacks installed and the input and output folders at the same paths.
    workers : int, optional
        Start a ``LocalCluster`` with this many worker processes (one thread each), forked
        from a multiprocessing forkserver where the platform has one (this sets dask's
        ``distributed.worker.multiprocessing-method`` for the rest of the process; see
        :func:`napari_sam.batch.distributed.start_local_cluster`).
    block_slices : int, optional
        On a cluster, split stacks with more slices than this into blocks of this many slices
        that run as separate tasks (``embed`` and ``auto``); default: whole files.
    on_result : callable(JobResult), optional
        Called as each job finishes (the CLI prints a line per file).
    on_wait : callable(Job, pid or None), optional
        Serial runs: called before waiting for another process that writes a job's output
        (such jobs are left for the end of the batch, then waited for). On a cluster such
        jobs come back ``"busy"`` (not ok) instead.
    note_unlockable : bool
        Log, once per file system after the run, that it cannot lock (the
        results' ``details["unlockable"]``: its jobs ran without a lock); False: the caller
        says it (the command line's summary).
    """
    results: list[JobResult] = []

    def collect(res: JobResult) -> None:
        results.append(res)
        if on_result is not None:
            on_result(res)

    try:
        if scheduler is None and workers is None:
            return _run_serial(jobs, ctx, collect, on_wait)
        return run_distributed(jobs, ctx, scheduler=scheduler, workers=workers,
                               block_slices=block_slices, on_result=collect)
    finally:
        if note_unlockable:
            say_unlockable(results)


def say_unlockable(results: Sequence[JobResult]) -> None:
    """Log the note of each file system whose output folders cannot lock, once per file
    system (:func:`unlockable_folders`)."""
    for out_dir, why in unlockable_folders(results):
        logger.warning("%s", unlockable_text(out_dir, why, ran=True))


def unlockable_folders(results: Sequence[JobResult]) -> list[tuple[str, str]]:
    """(output folder, why) of each file system whose output folders cannot lock (the
    results' ``details["unlockable"]``), once each, in the order the results name them: the
    subfolders a ``--recursive`` run mirrors into its output folder share its file system,
    named by the folder above all of them (the ``-o`` folder), not once per subfolder."""
    systems: dict = {}  # file system -> ([its output folders], why)
    for res in results:
        if not res.details.get("unlockable"):
            continue
        folder, why = (str(v) for v in res.details["unlockable"])
        try:
            system = os.stat(folder).st_dev
        except OSError:  # (gone since) as a file system of its own
            system = folder
        systems.setdefault(system, ([], why))[0].append(folder)
    return [(_folders_named(folders), why) for folders, why in systems.values()]


def _folders_named(folders: list[str]) -> str:
    """The folder above all of ``folders`` (one file system's output folders), or, where
    only the root is above them all (``a/x`` and ``b/y`` of a script's jobs), each named."""
    unique = list(dict.fromkeys(folders))
    if len(unique) == 1:
        return unique[0]
    kinds = {os.path.isabs(f) for f in unique}
    common = os.path.commonpath(unique if len(kinds) == 1 else
                                [os.path.abspath(f) for f in unique])
    if common in ("", os.path.dirname(common)):  # "" or the root: nothing above them all
        return ", ".join(unique)
    return common


def _run_serial(jobs, ctx, on_result, on_wait=None) -> list[JobResult]:
    """Run the jobs one after the other. An output that another process is writing is left
    for the end; then, if that process still holds it, this process waits for it
    (``on_wait(job, pid)`` is called first, with the holder's pid whenever one was read) and
    runs the job, which then usually finds the output complete."""
    from tqdm.auto import tqdm

    results: list[JobResult | None] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="files", unit="file", disable=ctx.quiet or len(jobs) < 2
               or not stderr_is_terminal(),
               position=0, dynamic_ncols=True)
    deferred = {}  # job index -> the pid that held its output when it was found busy
    try:
        for i, job in enumerate(jobs):
            bar.set_postfix_str(job.name, refresh=True)
            res = run_job(job, ctx)
            if res.status == "busy":
                deferred[i] = res.details.get("holder_pid")
                continue
            record_result(results, i, res, bar, on_result)
        for i, pid in deferred.items():
            job = jobs[i]
            res = run_job(job, ctx)  # the other process may be done by now: nothing to wait for
            if res.status == "busy":
                bar.set_postfix_str(f"waiting for {job.name}", refresh=True)
                if on_wait is not None:  # the holder now, else the one found before
                    on_wait(job, res.details.get("holder_pid") or OutputLock(
                        job.output).holder() or pid)
                res = run_job(job, ctx, wait=True)
            if res.status == "skipped" and res.reason == "complete":
                res.details["written_by_another_process"] = True
            record_result(results, i, res, bar, on_result)
    finally:
        bar.close()
    return [r for r in results if r is not None]


#: The note of an output that a worker process completed while an interrupted run stopped.
FINISHED_AS_STOPPED = "finished as the run stopped: complete, a rerun skips it"


def output_stamps(jobs: Sequence[Job]) -> dict[str, tuple[int, ...] | None]:
    """Each job's output as it is before a run (its path: its
    :func:`~napari_sam.batch.jobs.output_stamp`), for :func:`finished_meanwhile` to tell an
    output the run wrote from one that was there before."""
    return {str(job.output): output_stamp(job.output) for job in jobs}


def finished_meanwhile(jobs: Sequence[Job], results: Sequence[JobResult],
                       ctx: Context, before: dict[str, tuple[int, ...] | None]
                       ) -> list[JobResult]:
    """After Ctrl-C: a ``"done"`` result (note :data:`FINISHED_AS_STOPPED`) for each job
    without a result whose output this run wrote (not the one of ``before``, the
    :func:`output_stamps` taken before the run) and is complete now. The worker processes of
    a cluster finish the task they run while the run stops (closing them waits for them), so
    a file said "not run" was complete, and the rerun skipped it; an output that was there
    before the run and no worker replaced (``--overwrite``, or one the run had not reached)
    is not done by it."""
    ran = {r.input for r in results}
    late = []
    for job in jobs:
        if str(job.input) in ran:
            continue
        try:
            complete = (output_stamp(job.output) != before.get(str(job.output))
                        and job_output_state(job, ctx) == "complete")
        except Exception:  # noqa: BLE001 - only words: an unreadable output is "not run"
            complete = False
        if complete:
            late.append(JobResult(str(job.input), str(job.output), "done",
                                  details={"note": FINISHED_AS_STOPPED}))
    return late
