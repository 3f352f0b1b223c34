"""Running one job in this process (:func:`run_job`): lock the output, decide from its state
whether to skip it, mark it partial, load the model (cached per process) and call the
command's runner; every failure becomes a :class:`~napari_sam.batch.JobResult`."""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

from napari_sam import io as nio
from napari_sam.batch.auto_runner import run_auto
from napari_sam.batch.context import Context, Job, JobResult
from napari_sam.batch.embed_runner import run_embed
from napari_sam.batch.job_checks import check_input_file, os_error_reason, output_name_problem
from napari_sam.batch.jobs import (
    EDITED_REASON,
    OutputLock,
    cleanup_tmp,
    job_output_verdict,
    mark_partial,
    output_stamp,
    read_sidecar,
    restore_sidecar,
    work_dir,
)
from napari_sam.batch.memory_advice import out_of_memory_reason
from napari_sam.batch.models import get_model
from napari_sam.batch.preview import preview_path, write_preview_for
from napari_sam.batch.reading import MovieOfVolumes
from napari_sam.batch.rerun_reason import rerun_reason
from napari_sam.batch.saved_work import (
    finished_mark_taken,
    kept_clause,
    mark_finished,
    resume_reason,
)
from napari_sam.batch.segment_runner import run_segment
from napari_sam.batch.time_lapse import prompts_at, run_time_lapse
from napari_sam.memory import is_out_of_memory

RUNNERS: dict[str, Callable[[Job, Context, Any], dict]] = {
    "embed": run_embed,
    "segment": run_segment,
    "auto": run_auto,
}


#: Why a ``segment`` input without prompts is skipped (nothing written for it).
NO_PROMPTS = ("no prompts for it in the prompts file; nothing written (add rows with its "
              "name in the 'file' column to segment it)")


def no_prompts_reason(output) -> str:
    """:data:`NO_PROMPTS`, saying also when an earlier output of this input is there: it was
    made from prompts that are no longer in the file, and this run leaves it as it was (the
    user's file: never deleted; ``--overwrite`` does not replace it, as nothing is written)."""
    sidecar = nio.output_metadata_path(output)
    try:
        earlier = output.exists() or sidecar.exists()
    except OSError:  # e.g. a name longer than the file system allows: none can be there
        earlier = False
    if not earlier:
        return NO_PROMPTS
    try:
        meta = nio.read_output_metadata(output) or {}
    except Exception:  # an unreadable sidecar: the output is still named  # noqa: BLE001
        meta = {}
    params = meta.get("parameters") if isinstance(meta, dict) else None
    command = params.get("command") if isinstance(params, dict) else None
    made = ("made by an earlier run from prompts no longer in the file" if command == "segment"
            else f"written by `napari-sam {command}`" if command
            else "its sidecar does not say by what")
    return (f"{NO_PROMPTS}; an earlier output {output} ({made}) is still there and was left as "
            "it was (--overwrite does not replace it: there is nothing to write): delete it"
            + (f" and {sidecar.name}" if sidecar.exists() else "")
            + " if it no longer applies, or add prompts for this input again")


def foreign_reason(output) -> str:
    """Why a job whose output path holds something napari-sam did not write (no sidecar of
    ours: a user's image, labels or zarr store) fails: it is never replaced or deleted, even
    with ``--overwrite`` (which replaces napari-sam's own outputs only)."""
    return (f"{output} exists and was not written by napari-sam (no "
            f"{nio.output_metadata_path(output).name} of ours beside it): napari-sam never "
            "replaces or deletes it, not even with --overwrite (that replaces napari-sam's own "
            "outputs only); choose another output folder (-o), or move that file away yourself")


def one_line(exc: BaseException) -> str:
    """An exception as a one-line reason (the type named unless the message says it all)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (ValueError, FileNotFoundError, FileExistsError, nio.ImageReadError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failure_reason(exc: BaseException, job: Job, ctx: Context | None = None) -> str:
    """Why ``job`` failed, in one line: an error of the operating system while writing (a
    full disk, ...) with the output folder and what to do
    (:func:`~napari_sam.batch.job_checks.os_error_reason`), running out of memory with the
    options of ``ctx``'s command that lower it
    (:func:`~napari_sam.batch.memory_advice.out_of_memory_reason`), else :func:`one_line`."""
    if ctx is not None and is_out_of_memory(exc):
        return out_of_memory_reason(exc, ctx)
    if isinstance(exc, OSError):
        reason = os_error_reason(exc, job)
        if reason is not None:
            return reason
    return one_line(exc)


def run_job(job: Job, ctx: Context, *, wait: bool = False,
            earlier: dict | None = None, finished: bool = False) -> JobResult:
    """Run one job in this process (the model comes from :func:`get_model`'s cache).

    Never raises for problems with the file or the computation: they become a ``"failed"``
    result (which leaves the output's sidecar as it was before, :func:`restore_sidecar`). A
    ``segment`` input that the prompts file gives no prompt is ``"skipped"`` (reason
    :data:`NO_PROMPTS`, naming an earlier output of it that is left as it was,
    :func:`no_prompts_reason`) and nothing is written for it. ``KeyboardInterrupt`` propagates (the
    output stays resumable).

    An output folder whose file system cannot lock runs the job without a lock, with
    ``details["unlockable"]`` (output folder, why) for the caller to say once.

    ``earlier``: what an interrupted run had left of an ``auto`` job, read by the caller before
    the blocks of a cluster run added this run's slices
    (:func:`~napari_sam.batch.auto_runner.saved_slices`): the job's line says what it kept of
    that run, not the slices the blocks computed.

    ``finished``: the job's work folder was kept by a finished run (``--keep-work``), its
    mark (:func:`~napari_sam.batch.saved_work.take_finished_mark`) taken by the caller before
    the blocks ran; otherwise this job takes it, before its runner adds to the folder. What
    the job's line says of that work is decided in one place, :func:`take_info`.

    When another process holds the output's lock the result is ``"busy"`` (nothing done), or
    with ``wait=True`` the job waits for that process and then runs (usually finding the
    output complete and skipping it).
    """
    t0 = time.perf_counter()
    ctx = ctx.for_job(job)  # segment: the job's own prompts are part of its signature
    res = JobResult(str(job.input), str(job.output), "failed", pid=os.getpid())
    if ctx.command == "segment" and job.prompts is not None and not job.prompts:
        res.status, res.reason = "skipped", no_prompts_reason(job.output)
        return res
    try:
        res.reason = output_name_problem(job, ctx) or ""
        if res.reason:  # its lock, sidecar or output could not be created
            return res
        # once per job, before output_state reads the input (a FIFO would hang the batch; an
        # empty file, a dangling link); the runners open it without checking again
        check_input_file(job.input)
        job.output.parent.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(job.output, wait=wait, note=False)  # the summary says it, once
        with lock as locked:
            if lock.unlockable:  # (folder, why): said by the batch's main process
                res.details["unlockable"] = (str(lock.path.parent.parent.parent), lock.unlockable)
            if not locked:
                pid = lock.holder()
                res.status = "busy"
                res.details["holder_pid"] = pid
                res.reason = ("busy: another napari-sam process"
                              + (f" (pid {pid})" if pid else "") + " is writing it")
                return res
            verdict = job_output_verdict(job, ctx)
            state = verdict.state
            if state == "complete" and not ctx.overwrite:
                res.status, res.reason = "skipped", "complete"
                meta = nio.read_output_metadata(job.output) or {}
                res.objects = len(meta.get("objects") or []) if ctx.command != "embed" else (
                    (meta.get("extra") or {}).get("slices"))
                if ctx.preview and ctx.command != "embed" and not preview_path(job.output).exists():
                    write_preview_for(job, ctx)
                return res
            if state == "edited" and not ctx.overwrite:
                res.status, res.reason = "skipped", EDITED_REASON
                res.details["previous_state"] = state  # "edited": kept as it is
                return res
            if state == "foreign":  # never replaced, --overwrite or not: not ours
                res.reason = foreign_reason(job.output)
                res.details["not_ours"] = True  # the summary's advice: move it, another -o
                return res
            if state == "other-command" and not ctx.overwrite:
                meta = nio.read_output_metadata(job.output) or {}
                other = (meta.get("parameters") or {}).get("command")
                by = (f"`napari-sam {other}`" if other else "napari-sam (an embedding store of "
                      "the dock or napari_sam.embed, no command's record beside it)")
                res.reason = (f"{job.output} was written by {by}; pass --overwrite, --suffix "
                              "or another output folder")
                return res
            res.details["previous_state"] = state
            res.details["rerun_reason"] = rerun_reason(verdict)  # "" when missing
            res.details["replaced"] = state != "missing" and job.output.exists()
            cleanup_tmp(job.output)
            previous, stamp = read_sidecar(job.output), output_stamp(job.output)
            mark_partial(job, ctx)
            with finished_mark_taken(work_dir(job)) as took:  # (--keep-work)
                try:
                    model, loaded = get_model(ctx.model, ctx.device)
                    res.model_loaded = loaded
                    info = run_command(job, ctx, model)
                except BaseException:  # also Ctrl-C/SIGTERM: no "partial" sidecar, no output
                    restore_sidecar(job, previous, stamp)
                    raise
            take_info(res, info, verdict, earlier, took or finished)
            res.status = "done"
            end_work(job, ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one bad file never stops the batch
        res.status = "failed"
        res.reason = failure_reason(exc, job, ctx)
        if ctx.verbose:
            res.details["traceback"] = traceback.format_exc()
    finally:
        res.seconds = time.perf_counter() - t0
    return res


def end_work(job: Job, ctx: Context) -> None:
    """After a finished job: its work folder removed, or kept (``--keep-work``) and marked a
    finished run's (what a rerun reuses of it is no interrupted run's)."""
    if ctx.keep_work:
        mark_finished(work_dir(job))
    else:
        nio.remove_path(work_dir(job))


def take_info(res: JobResult, info: dict, verdict, earlier: dict | None = None,
              finished: bool = False) -> None:
    """A finished job's runner ``info`` into its result: the objects, the details (with the
    "note" the summary shows, as the runner knows it: no read of the output) and, where no
    complete output was there (``verdict``: the output's state before the job), the reason
    from what it kept of an interrupted run (:func:`resumed_reason`; ``earlier``: that
    record as it was before the blocks of a cluster run added this run's slices;
    ``finished``: the work folder was one a finished run kept, ``--keep-work``)."""
    res.objects = info.get("objects")
    res.details.update({k: v for k, v in info.items() if k != "objects"})
    record = info.get("resume")
    if earlier is not None and record is not None:  # (the blocks' slices: this run's)
        record = res.details["resume"] = {**earlier, "of": record.get("of")}
    if finished and record is not None:
        record = res.details["resume"] = {**record, "finished": True}
    if verdict.state == "missing" or verdict.cause == "unfinished":
        resumed_reason(res, record)
        return
    # a complete output's reason (changed, --overwrite) first, and what it kept of a run
    # interrupted since (the same new settings: its slices are this run's)
    kept = kept_clause(record) if record is not None else ""
    if kept:
        res.details["rerun_reason"] = f"{res.details.get('rerun_reason')}; {kept}"
    else:
        res.details.pop("resume", None)


def resumed_reason(res: JobResult, record: dict | None) -> None:
    """The ``rerun_reason`` of a job that found no complete output (none, or one a killed
    run marked ``"partial"``), from what its runner kept of an interrupted run
    (:func:`~napari_sam.batch.saved_work.resume_reason`: the work folder is the resume record,
    so Ctrl-C, which leaves no sidecar, and SIGKILL, which leaves a partial one, read alike).
    Without a record (a ``segment`` job reading the user's ``--embeddings`` store) the reason
    stays as the sidecar gave it."""
    if record is None:
        res.details.pop("resume", None)
        return
    unfinished = res.details.get("previous_state") == "partial" and res.details.get("replaced")
    res.details["rerun_reason"] = resume_reason(record, bool(unfinished))


def run_command(job: Job, ctx: Context, model) -> dict:
    """The command's runner on ``job``; for ``auto`` and ``segment`` on a movie of volumes
    (``TZYX``: the runner's first read raises
    :class:`~napari_sam.batch.reading.MovieOfVolumes`), on each time point as its own volume
    (:func:`napari_sam.batch.time_lapse.run_time_lapse`)."""
    runner = RUNNERS[ctx.command]
    whole = job
    if any("time" in e for items in (job.prompts or {}).values() for e in items):
        # a movie's prompts, or all at time point 0 (batch.prompts.check_prompts)
        job = dataclasses.replace(job, prompts=prompts_at(job.prompts, 0))
    try:
        return runner(job, ctx, model)
    except MovieOfVolumes as exc:
        return run_time_lapse(whole, ctx, model, runner, exc.time_points)


def record_result(results, i: int, res: JobResult, bar,
                  on_result: Callable[[JobResult], None] | None) -> None:
    """Keep job ``i``'s result, advance the files bar and tell ``on_result``."""
    results[i] = res
    bar.update(1)
    if on_result is not None:
        on_result(res)
