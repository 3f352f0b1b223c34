"""Jobs, resume and locks: one job per input (:func:`make_jobs`), the state of an existing
output (:func:`output_state`), marking a job's output partial while it runs, the work folder
of its resumable per-slice data, and the lock that keeps two processes off one output."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.inputs import WORK_DIR, BatchError, output_path
from napari_sam.batch.models import model_file_id, packaged_model_id
from napari_sam.batch.output_names import folds_names, output_key
from napari_sam.batch.preview import preview_path
from napari_sam.batch.prompts import check_unambiguous, prompts_for
from napari_sam.io.lock_errors import lock_error_text, lock_is_held

logger = logging.getLogger("napari_sam.batch")

_UNLOCKABLE_NOTED: set[str] = set()  # lock folders whose file system cannot lock, said once


def make_jobs(inputs: Sequence[Path], ctx: Context,
              prompts: Mapping[str, Mapping] | None = None,
              subfolders: Mapping[Path, Path] | None = None) -> list[Job]:
    """One :class:`Job` per input; refuses inputs that would share an output name (also
    names that differ only in case, ``a.tif`` and ``A.TIF``, where the output folder's file
    system takes them as one file: :func:`~napari_sam.batch.output_names.folds_names`).

    ``subfolders``: an input's folder below where it was found
    (:func:`~napari_sam.batch.inputs.collect_inputs_with_folders`); its output goes into the
    same subfolder of the output folder (default: all outputs directly in it)."""
    if prompts is not None:
        check_unambiguous(prompts, inputs, subfolders)
    jobs = []
    by_output: dict[str, tuple[Path, Path]] = {}
    clashes = []
    folds = folds_names(ctx.out_dir)
    given = {Path(p).resolve(): Path(p) for p in inputs}
    for inp in inputs:
        sub = (subfolders or {}).get(inp, Path("."))
        out = output_path(inp, ctx.out_dir, ctx.command, suffix=ctx.suffix, fmt=ctx.fmt,
                          subfolder=sub)
        key = output_key(out, folds)
        if key in by_output:
            first, first_out = by_output[key]
            clashes.append(f"{first} and {inp} -> {out}" if first_out == out else
                           f"{first} -> {first_out} and {inp} -> {out}, one file where names "
                           "that differ only in case are one (as on Windows and macOS)")
        by_output[key] = (inp, out)
        resolved = out.resolve()
        if resolved == Path(inp).resolve():
            raise BatchError(f"the output {out} would replace its own input; choose another -o")
        if resolved in given:
            raise BatchError(
                f"the output of {inp} would be {out}, which is also an input of this batch "
                f"({given[resolved]}); write the outputs into another folder (-o) or name them with "
                "another --suffix")
        preview = preview_path(out).resolve() if ctx.preview else None
        if preview in given:  # a photo (PNG) beside its output: --preview would replace it
            raise BatchError(
                f"the --preview of {inp} would be {preview_path(out)}, which is an input of "
                f"this batch ({given[preview]}) and would be replaced; write the outputs into "
                "another folder (-o) or name them with another --suffix")
        job_prompts = None
        if prompts is not None:
            job_prompts = prompts_for(prompts, Path(inp), sub)
        jobs.append(Job(Path(inp), out, job_prompts, Path(sub)))
    if clashes:
        raise BatchError(
            "several inputs would write the same output (" + "; ".join(clashes)
            + "); run them into different output folders (or rename one)"
        )
    return jobs


class OutputLock:
    """Exclusive lock on an output, held while its job runs (POSIX ``flock``).

    The kernel releases it when the process dies (even on SIGKILL). Lock files live in the
    output folder's ``.napari-sam-work/locks/`` and are removed when the job ends (the
    folders too, when empty), so a finished run leaves no trace. Removing a lock file is
    safe: a process that locked the old file checks that the path still names it, and
    retries otherwise. Where ``fcntl`` is missing (Windows) locking is skipped, and so it is
    on a file system that cannot lock (``flock`` fails with another error than "held":
    ENOLCK on NFS without lockd, ENOSYS on Lustre without flock), with a note once per
    folder (:func:`note_unlockable`) unless ``note`` is False: the job runs, but two runs
    there are not kept apart. :attr:`unlockable` then holds why (else ""), for a batch to
    say it once, in the summary of its main process (its jobs may run in worker processes,
    each of which would say it again).
    The folder is taken with its symbolic links resolved, so two spellings of one output
    (a link to its folder) share one lock.

    Parameters
    ----------
    output : path
    wait : bool
        Block until the lock is free (default: fail at once when another process holds it).
    note : bool
        Log the note of a file system that cannot lock (default); False: only set
        :attr:`unlockable`.
    """

    def __init__(self, output: Path, *, wait: bool = False, note: bool = True):
        parent = Path(os.path.realpath(output.parent))  # one lock for every spelling
        self.path = parent / WORK_DIR / "locks" / f"{output.name}.lock"
        self.wait = bool(wait)
        self.note = bool(note)
        self.unlockable = ""  # why the file system could not lock, when it could not
        self._fh = None

    def holder(self) -> int | None:
        """The process id written by the lock's holder, if any."""
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def holder_host(self) -> str | None:
        """The host name written by the lock's holder, if any (older runs wrote none)."""
        try:
            return self.path.read_text().split()[1]
        except (OSError, IndexError):
            return None

    def __enter__(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fh = open(self.path, "a+")
            except FileNotFoundError:  # another process removed the empty folder just now
                continue
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except OSError as exc:
                if lock_is_held(exc):  # (another process holds it)
                    fh.close()
                    return False
                self.unlockable = lock_error_text(exc)
                if self.note:
                    note_unlockable(self.path.parent, exc)
                self._fh = fh  # not locked: __exit__ still removes the file and folders
                return True
            except BaseException:  # Ctrl-C while waiting
                fh.close()
                raise
            try:  # the holder before us may have removed the file: lock the current one
                same = os.path.samestat(os.fstat(fh.fileno()), os.stat(self.path))
            except OSError:
                same = False
            if same:
                break
            fh.close()
        self._fh = fh
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()} {socket.gethostname()}\n")
        fh.flush()
        return True

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while we hold it: a waiter re-checks the path
            self._fh.close()  # closing releases the flock
            self._fh = None
            for d in (self.path.parent, self.path.parent.parent):  # locks/, .napari-sam-work/
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when empty


def note_unlockable(folder: Path, exc: OSError) -> None:
    """Say once per ``folder`` (a warning of the ``napari_sam.batch`` logger: a
    ``napari-sam: ...`` line on the command line) that its file system cannot lock, so the
    jobs there run without a lock and two runs on one output are not kept apart."""
    key = str(folder)
    if key in _UNLOCKABLE_NOTED:
        return
    _UNLOCKABLE_NOTED.add(key)
    logger.warning("%s", unlockable_text(folder.parent.parent, lock_error_text(exc)))


def unlockable_text(out_dir, reason: str, *, ran: bool = False) -> str:
    """The note of an output folder whose file system cannot lock (``reason``:
    :func:`napari_sam.io.lock_errors.lock_error_text`); ``ran``: worded for a batch's
    summary, after its jobs ran."""
    how = "its jobs ran" if ran else "running"
    return (f"the file system of {out_dir} cannot lock files ({reason}): {how} without a "
            "lock, so two napari-sam runs writing the same output there are not kept apart; "
            "run one at a time, or write to a local disk")


#: Why a complete output changed since it was written is kept (``output_state`` "edited").
EDITED_REASON = ("changed since napari-sam wrote it (labels corrected by hand?): kept as it "
                 "is; pass --overwrite to replace it, or use another output folder")


@dataclass(frozen=True)
class OutputVerdict:
    """The state of an existing output (:func:`output_verdict`) and why: the one decision
    that a batch acts on and a rerun's line explains
    (:func:`napari_sam.batch.rerun_reason.rerun_reason`).

    Attributes
    ----------
    state : str
        One of :func:`output_state`'s states.
    cause : str
        Which check decided it: for ``"changed"`` ``"input"`` (:attr:`input_problem` says
        what), ``"signature"`` (:attr:`differs` names the keys) or ``"model"``
        (:attr:`model_ids`); for ``"partial"`` ``"unfinished"`` or ``"removed"`` (a complete
        sidecar whose output is gone); ``""`` otherwise.
    recorded : dict
        The parameters (signature) its sidecar records, ``{}`` when none.
    signature : dict
        The signature it was compared with.
    differs : tuple of str
        The keys of ``recorded`` and ``signature`` that differ (also those on one side only),
        sorted; set when ``cause`` is ``"signature"``.
    input_problem : str
        :func:`napari_sam.io.incomplete_reason`, when ``cause`` is ``"input"``.
    model_ids : (str, str), optional
        (recorded, current) ids of the model file (:func:`model_file_ids`), when ``cause``
        is ``"model"``.
    """

    state: str
    cause: str = ""
    recorded: dict = field(default_factory=dict)
    signature: dict = field(default_factory=dict)
    differs: tuple[str, ...] = ()
    input_problem: str = ""
    model_ids: tuple[str, str] | None = None


def output_state(output: Path, input_path: Path | None, signature: Mapping) -> str:
    """Classify an existing output before a job runs (:func:`output_verdict` says why).

    Returns
    -------
    ``"missing"``
        Nothing there.
    ``"complete"``
        Complete and up to date (input unchanged, same command, model and parameters, and
        for ``segment`` the same prompts of this input): skip.
    ``"changed"``
        Written by napari-sam but the input, the parameters, the prompts or the content of
        the model's checkpoint file (its model id) changed since: recompute.
    ``"partial"``
        Its job never finished (killed, crashed, interrupted): recompute, reusing saved work.
    ``"edited"``
        Complete, but the output was changed since it was written (labels corrected by hand
        and saved over it, :func:`napari_sam.io.output_edited`): kept, replaced only with
        ``--overwrite``, whatever else changed.
    ``"foreign"``
        A file without a napari-sam sidecar: not ours, never replaced (not even with
        ``--overwrite``).
    ``"other-command"``
        Written by another napari-sam command, or an embedding store napari-sam marked
        without a sidecar (the dock's, ``napari_sam.embed``'s): replaced only with
        ``--overwrite``.
    """
    return output_verdict(output, input_path, signature).state


def output_verdict(output: Path, input_path: Path | None, signature: Mapping) -> OutputVerdict:
    """:func:`output_state` of ``output`` with the check that decided it
    (:class:`OutputVerdict`); the checks run in the order the states are listed there."""
    meta = nio.read_output_metadata(output)
    exists = output.exists()
    sig = dict(signature)
    if meta is None or meta.get("format") != nio.OUTPUT_METADATA_FORMAT:
        if not exists:
            return OutputVerdict("missing", signature=sig)
        from napari_sam.embeddings import is_embedding_store

        # an embedding store napari-sam marked (the dock's, napari_sam.embed's) has no
        # sidecar but is ours: replaced with --overwrite, as another command's output
        state = "other-command" if is_embedding_store(output) else "foreign"
        return OutputVerdict(state, signature=sig)
    params = meta.get("parameters") or {}
    params = recorded_smoothing(dict(params) if isinstance(params, Mapping) else {}, meta)
    verdict = partial(OutputVerdict, recorded=params, signature=sig)
    if params.get("command") not in (None, sig.get("command")):
        return verdict("other-command" if exists else "missing")
    if meta.get("status") != "complete" or not exists:
        # a complete sidecar without its output: the output was removed
        return verdict("partial", "removed" if meta.get("status") == "complete" else "unfinished")
    if nio.output_edited(output):
        return verdict("edited")
    problem = nio.incomplete_reason(output, input_path)
    if problem:
        return verdict("changed", "input", input_problem=problem)
    if params != sig:
        differs = tuple(sorted(k for k in set(params) | set(sig)
                               if k not in params or k not in sig or params[k] != sig[k]))
        return verdict("changed", "signature", differs=differs)
    ids = model_file_ids(meta, sig)
    if ids is not None and ids[0] != ids[1]:
        return verdict("changed", "model", model_ids=ids)
    return verdict("complete")


def recorded_smoothing(params: dict, meta: Mapping) -> dict:
    """``params`` (an output's recorded parameters) with the ``input_smoothing`` its model
    ran with when they lack it: outputs written before the signature recorded the smoothing
    of a CNN checkpoint without its FILE.json have none, but their model id says it
    (``file:<hash>+smooth0.7``); read as 0, a rerun redid them all with "parameters changed:
    input_smoothing 0.0 -> 0.7", the same smoothing."""
    if "input_smoothing" in params:
        return params
    from napari_sam.models.registry import model_id_parts

    model = meta.get("model")
    _, sigma = model_id_parts(model.get("id") if isinstance(model, Mapping) else None)
    return {**params, "input_smoothing": sigma} if sigma else params


def job_output_state(job: Job, ctx: Context) -> str:
    """:func:`output_state` of ``job``'s output under ``ctx`` (:func:`job_output_verdict`)."""
    return job_output_verdict(job, ctx).state


def job_output_verdict(job: Job, ctx: Context) -> OutputVerdict:
    """:func:`output_verdict` of ``job``'s output under ``ctx`` (its own context), where an
    output written with another ``--channel`` (or without) counts as complete when the input
    has no channel axis (``--channel`` does not apply to it:
    :func:`napari_sam.batch.reading.channel_applies`): a mixed folder done without
    ``--channel`` and rerun with it redoes only the files with channels."""
    sig = ctx.signature()
    verdict = output_verdict(job.output, job.input, sig)
    if verdict.state != "changed":
        return verdict
    recorded = verdict.recorded.get("channel")
    if recorded == sig.get("channel") or not isinstance(recorded, (int, type(None))):
        return verdict
    from napari_sam.batch.reading import channel_applies

    if channel_applies(job.input, ctx):
        return verdict
    return output_verdict(job.output, job.input, {**sig, "channel": recorded})


def model_file_ids(meta: Mapping, signature: Mapping) -> tuple[str, str] | None:
    """(recorded, current) ids of the checkpoint file the signature's model names (the
    recorded one "" when the output metadata has none), which :func:`output_verdict`
    compares: whether the file still holds the weights that made the output. Its id is
    ``file:<sha256[:12]>``, or for the bundled demo model ``demo:<sha256[:12]>``, whose
    weights change when napari-sam-stacks is upgraded; a recorded ``+...`` suffix is left
    out. None when there is nothing to compare (a downloaded registry model, a file that
    is not there: loading it fails)."""
    spec = str(signature.get("model"))
    current = model_file_id(spec) or packaged_model_id(spec)
    if current is None:
        return None
    from napari_sam.models.registry import model_id_parts

    return model_id_parts((meta.get("model") or {}).get("id"))[0], current


def mark_partial(job: Job, ctx: Context) -> None:
    """Write the job's output metadata as ``"status": "partial"`` before any work, so a
    job killed at any point is never taken as complete; it holds the input's fingerprint
    before it is read (``input_read``, see :func:`check_input_unchanged`)."""
    ctx = ctx.for_job(job)
    try:
        read = nio.input_fingerprint(job.input)
    except OSError:  # reading it fails next, and says why
        read = None
    nio.write_json_atomic(
        nio.output_metadata_path(job.output),
        {
            "format": nio.OUTPUT_METADATA_FORMAT,
            "format_version": nio.OUTPUT_METADATA_VERSION,
            "status": "partial",
            "parameters": ctx.signature(),
            "input": str(job.input),
            "input_read": read,
            "pid": os.getpid(),
        },
    )


class InputChanged(ValueError):
    """The input file changed while the job read it."""


def check_input_unchanged(job: Job) -> dict | None:
    """Before the job writes its output: raise :class:`InputChanged` when its input is not
    the file it was when the job started (size, time stamp or sampled content differ from
    :func:`mark_partial`'s ``input_read``): a file still being written when the run started,
    or replaced meanwhile (acquisition software writes, then renames). Its labels would
    come from the old data while the output metadata recorded the new file, so a rerun
    skipped it for good.

    Returns the fingerprint taken when the job started (None: none was taken): what the
    output metadata records as the input (``input_record`` of
    :func:`napari_sam.io.write_output_metadata`), so that a change while the output is
    being written is seen by the next run."""
    before = (nio.read_output_metadata(job.output) or {}).get("input_read")
    if not isinstance(before, dict):
        return None
    try:
        now = nio.input_fingerprint(job.input)
    except OSError:
        now = {}
    if any(now.get(k) != before.get(k) for k in ("size", "mtime_ns", "sample_hash")):
        raise InputChanged(
            f"{job.input.name} changed while it was being read (a file still being written "
            "or replaced during the run): nothing was written for it; rerun when the file is "
            "complete")
    return before


def read_sidecar(output: Path) -> bytes | None:
    """The bytes of ``output``'s sidecar as they are now (None when there is none), to put
    back with :func:`restore_sidecar` when its job fails."""
    try:
        return nio.output_metadata_path(output).read_bytes()
    except OSError:
        return None


def output_stamp(output: Path) -> tuple[int, ...] | None:
    """(inode, size, mtime_ns, ctime_ns) of an output file or folder as it is now, None when
    missing: taken before a job so :func:`restore_sidecar` can tell whether the job replaced
    it (outputs are renamed into place, so a new one is a new inode, even where times are
    coarse and sizes equal)."""
    try:
        st = output.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def restore_sidecar(job: Job, previous: bytes | None, stamp: tuple[int, ...] | None) -> None:
    """After a failed job: put back the sidecar :func:`mark_partial` replaced.

    A failed job leaves its output as it was: no sidecar when there was none (a file that
    produced nothing leaves no ``"partial"`` sidecar behind), the previous one otherwise. Its
    resumable work stays in the work folder, which a rerun finds by itself (the work folder
    records what it was made for; the sidecar is not needed for that). A sidecar that is no
    longer the partial one of this process (the job wrote its output) is left alone, and so
    is the partial one when the output is no longer the one of ``stamp`` (its
    :func:`output_stamp` before the job): the job failed after writing its
    output, before its sidecar, so the previous sidecar would describe another file (a rerun
    then took the new output for one edited by hand, or without a sidecar for a foreign
    file) and the "partial" one makes a rerun compute it again."""
    meta = nio.read_output_metadata(job.output) or {}
    if meta.get("status") != "partial" or meta.get("pid") != os.getpid():
        return
    if output_stamp(job.output) != stamp:
        return
    path = nio.output_metadata_path(job.output)
    if previous is None:
        nio.remove_path(path)
        return
    tmp = nio.tmp_name(path)
    try:
        tmp.write_bytes(previous)
        os.replace(tmp, path)
    finally:
        nio.remove_path(tmp)


def clear_leftovers(output: Path, until: float | None = None) -> None:
    """After a batch whose worker processes were stopped (a cluster closed after Ctrl-C or
    SIGTERM kills the tasks it runs): take ``output``'s lock if no process holds it (a lock
    of a process that no longer runs is free: its file is removed when released) and
    remove a ``"partial"`` sidecar that has no output beside it (a job killed before it
    wrote anything; a rerun recomputes the output without it). A partial sidecar beside an
    output stays: it says that output is not complete. An output locked by a running
    process is left alone; ``until`` (a ``time.monotonic()`` deadline) waits for a holder
    that is exiting (the workers of a local cluster that is closing)."""
    lock = OutputLock(output, note=False)  # (the jobs said it: once, in the summary)
    while lock.path.exists():  # else nothing left by a killed job (and no folder made here)
        try:
            with lock as locked:
                meta = nio.read_output_metadata(output) if locked else None
                if (meta or {}).get("status") == "partial" and not os.path.lexists(output):
                    nio.remove_path(nio.output_metadata_path(output))
        except OSError:  # a folder we cannot write: left as it is
            return
        if locked or until is None or time.monotonic() >= until:
            return
        time.sleep(0.1)


def cleanup_tmp(output: Path) -> None:
    """Remove temporaries of ``output`` left by a killed writer (we hold its lock)."""
    prefix = f".{output.name}."
    with contextlib.suppress(OSError):
        for p in output.parent.iterdir():
            if p.name.startswith(prefix) and p.name.endswith(".tmp"):
                nio.remove_path(p)


def work_dir(job: Job) -> Path:
    """The job's resumable per-slice work: ``<out>/.napari-sam-work/<output name>``."""
    return job.output.parent / WORK_DIR / job.output.name
