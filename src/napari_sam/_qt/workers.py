"""Long jobs as generators that yield progress, and how they run (thread or synchronously).

A *job* is a generator function that yields ``(done, total)`` (or a status line, a ``str``,
or a :class:`~napari_sam.annotate.jobs.Phase` when its next phase starts) and returns its
result. Progress reaches the bar through a
:class:`~napari_sam.annotate.jobs.ProgressTracker`: within a phase it never goes backwards,
and a new phase is named (``on_phase``, the napari bar's description) when it starts from 0.
Jobs never touch napari layers; the ``on_returned`` callback (run on the main thread) does.
Jobs run in a :func:`napari.qt.threading.create_worker` thread (with a napari progress bar
in its activity dock when ``progress_bar``: the dock does without, as it has its own bar and
napari's made every job about 1.4x slower on software OpenGL,
``benchmarks/bench_dock_jobs.py``) and can be cancelled between two yields; with
``sync=True`` (what most tests use) the same generator runs on the calling thread, with the
same callbacks and the same cancellation points.

Every exception a job raises ends the job through ``on_error`` and then ``on_finished``,
whatever its type: superqt's worker drops a ``RuntimeError`` without emitting ``errored``
or ``finished`` (it takes it for a deleted Qt object), and ``ModelDownloadError`` and CUDA's
out-of-memory error are RuntimeErrors. So the job body never raises into superqt: the error
is caught on the job's thread and returned as a :class:`JobFailed`, which the main thread
hands to ``on_error``.

The jobs themselves (:func:`~napari_sam.annotate.jobs.embed_job`,
:func:`~napari_sam.annotate.jobs.with_progress`) are the core's, :mod:`napari_sam.annotate.jobs`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator

from napari_sam.annotate.jobs import Cancelled, Phase, ProgressTracker, cancel_check

__all__ = ["Job", "JobFailed", "run_job"]


class JobFailed:
    """What a job returns instead of raising: the exception it ended with (see the module
    docstring for why errors do not travel as exceptions)."""

    def __init__(self, error: BaseException):
        self.error = error

    def __repr__(self) -> str:
        return f"JobFailed({self.error!r})"


# ------------------------------------------------------------------------------ running
class Job:
    """A started job: ``cancel()``, ``running``, ``cancelled``, ``succeeded`` (its result was
    applied), ``error`` (what it failed with, or None); ``worker`` when threaded; ``key``
    what it was started for, ``stale`` (see ``AnnotationSession.cancel_stale_job``) and
    ``note``, the line a stale job's stop said (a preload that follows it says it again)."""

    def __init__(self, description: str, key=None):
        self.description = description
        self.key = key  # the image, model and settings it was started for (job_key)
        self.stale = False  # cancelled because they changed (cancel_stale_job)
        self.note = ""  # what its stop said, when stale (job_cancelled)
        self.worker = None
        self.running = True
        self.cancelled = False
        self.succeeded = False
        self.error: BaseException | None = None
        self.phase = ""  # the phase under way (a Phase's name), "" before the first
        #: a threading.Event that asks the job to end early, keeping what it did (a
        #: preload of tiles making way for a click: ``AnnotationSession.pause_for_click``)
        self.pause = None
        self._pbar = None

    def cancel(self) -> None:
        """Ask the job to stop at its next progress report; ``on_returned`` will not run."""
        self.cancelled = True


def _progress_bar(description: str):
    try:
        from napari.utils import progress

        return progress(total=0, desc=description)
    except Exception:  # pragma: no cover - napari's progress needs an app
        return None


def run_job(
    gen: Generator,
    *,
    description: str,
    on_progress: Callable[[int, int], None] | None = None,
    on_returned: Callable[[object], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    on_finished: Callable[[Job], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
    sync: bool = False,
    progress_bar: bool = True,
    job: Job | None = None,
) -> Job:
    """Run a started generator ``gen`` as a job (see the module docstring).

    Callbacks run on the calling (main) thread; ``on_message(text)`` gets the strings the job
    yields (status lines), ``on_phase(name)`` the name of each phase as it starts, and
    ``on_progress(done, total)`` the progress to show (never backwards within a phase).
    ``on_finished`` runs last, always: after the
    result, an error or a cancellation. Pass ``job`` to get a handle before a synchronous
    run starts (so that a callback can cancel it).
    """
    job = Job(description) if job is None else job
    pbar = _progress_bar(description) if progress_bar else None
    progressed = _reporter(job, description, pbar, on_message, on_phase, on_progress)

    def finished():
        job.running = False
        if pbar is not None:
            pbar.close()
        if on_finished is not None:
            on_finished(job)

    def returned(value):
        if isinstance(value, JobFailed):
            errored(value.error)
            return
        if job.cancelled:
            return
        try:
            if on_returned is not None:
                on_returned(value)
        except Exception as err:  # noqa: BLE001 - applying the result failed: still reported
            errored(err)
            return
        job.succeeded = True
        if pbar is not None and pbar.total:
            pbar.update(pbar.total - pbar.n)  # done, even where the work ended early

    def errored(err):
        if isinstance(err, Cancelled) or job.cancelled:
            return
        job.error = err
        if on_error is not None:
            on_error(err)
        else:  # pragma: no cover
            raise err

    guarded = _guarded(gen, job)
    if sync:
        _run_here(guarded, progressed, returned, errored, finished)
    else:
        _run_in_thread(guarded, job, progressed, returned, errored, finished)
    return job


def _reporter(job: Job, description: str, pbar, on_message, on_phase, on_progress):
    """The main thread's handler of what a job yields: status lines, phases and progress
    (through a :class:`~napari_sam.annotate.jobs.ProgressTracker`), in the order yielded.

    Updating napari's progress bar can process pending Qt events, among them the job's
    next reports: a report that arrives while one is handled waits for it (handled one
    after the other, never nested), so the bar and the callbacks see them in order.
    """
    tracker = ProgressTracker()
    pending: list = []

    def show(value):
        # napari's bar is closed once the job ended (a report that arrived before the end
        # but waited behind a nested one still reaches the callbacks, in order)
        bar = pbar if job.running else None
        if isinstance(value, str):  # a new status line
            if on_message is not None:
                on_message(value)
        elif isinstance(value, Phase):  # counting starts again, under the phase's name
            job.phase = tracker.start(value)
            if on_phase is not None:
                on_phase(job.phase)
            _restart_bar(bar, f"{description}: {job.phase}")
        else:
            done, total = tracker.update(*value)
            if on_progress is not None:
                on_progress(done, total)
            if bar is not None:
                if bar.total != total:
                    bar.total = total
                bar.update(done - bar.n)

    def progressed(value):
        if not job.running:  # arrived after the end of the job: the bar is already final
            return
        if isinstance(value, Phase):  # known at once: the job's end, handled nested while
            job.phase = value.name   # an earlier report waits, names the phase it failed in
        pending.append(value)
        if len(pending) > 1:  # arrived while another is handled (below): handled next
            return
        try:
            while pending:
                show(pending[0])
                pending.pop(0)
        except BaseException:
            pending.clear()
            raise

    return progressed


def _restart_bar(pbar, description: str) -> None:
    """napari's bar of a job from 0 (busy) again, under ``description``: a new phase."""
    if pbar is None:
        return
    pbar.set_description(description)
    pbar.total = 0
    pbar.n = 0
    pbar.update(0)  # tells napari's activity dock the value


def _run_here(gen: Generator, progressed, returned, errored, finished) -> None:
    """Run a job's generator on this thread, calling back as the worker's signals would."""
    try:
        while True:
            try:
                value = next(gen)
            except StopIteration as stop:
                returned(stop.value)
                break
            progressed(value)
    except Exception as err:  # noqa: BLE001 - a progress callback failed: reported too
        errored(err)
    finally:
        finished()


def _run_in_thread(gen: Generator, job: Job, progressed, returned, errored, finished) -> None:
    """Start a napari worker thread (``job.worker``) running the job's generator."""
    from napari.qt.threading import create_worker
    from qtpy.QtCore import Qt

    worker = create_worker(lambda: (yield from gen), _start_thread=False,
                           _worker_class=_job_worker_class())
    job.worker = worker

    def aborted():
        """napari quits every worker when its window closes (superqt's ``quit``): the
        worker then stops iterating without closing the generator, and a core function
        bridged by ``with_progress`` ran on in its helper thread (a minute of segment
        everything after the viewer was closed). Runs on the worker's thread."""
        job.cancelled = True
        _close(gen)

    def release():
        """The job ended: its worker lets go of the callbacks. A Qt connection holds its
        slot from C++, where Python's garbage collector cannot see: the worker kept these
        closures, and through them the controller of a closed dock (its predictor, its
        embeddings), alive for good."""
        for signal in (worker.aborted, worker.yielded, worker.returned, worker.errored,
                       worker.finished):
            try:
                signal.disconnect()
            except (TypeError, RuntimeError):  # nothing connected (or already deleted)
                pass

    worker.aborted.connect(aborted, Qt.ConnectionType.DirectConnection)
    worker.yielded.connect(progressed)
    worker.returned.connect(returned)
    worker.errored.connect(errored)
    worker.finished.connect(finished)
    worker.finished.connect(release)  # last: after ``finished``
    worker.start()


def _guarded(gen: Generator, job: Job) -> Generator:
    """Yield from ``gen`` until it ends or ``job`` is cancelled; always close ``gen``.

    Each step of ``gen`` runs under :func:`~napari_sam.annotate.jobs.cancel_check`: a
    core function bridged by ``with_progress`` stops at its next progress call once the
    job is cancelled. An exception of ``gen`` (or of closing it) is returned as
    :class:`JobFailed`, never raised. Closing happens on the thread that runs the job, so a
    core function bridged by :func:`with_progress` has stopped before the job reports that
    it finished.
    """
    result = None
    try:
        while True:
            try:
                with cancel_check(lambda: job.cancelled):  # the core function stops sooner
                    value = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            except Exception as err:  # noqa: BLE001 - every error type must end the job
                result = JobFailed(err)
                break
            yield value
            if job.cancelled:
                break
    finally:
        closing = _close(gen)
    if closing is not None and not isinstance(result, JobFailed) and not job.cancelled:
        result = closing  # an error while stopping is an error too
    return None if job.cancelled and not isinstance(result, JobFailed) else result


def _close(gen: Generator) -> JobFailed | None:
    try:
        gen.close()
    except Exception as err:  # noqa: BLE001 - reported like any other error of the job
        return JobFailed(err)
    return None


# ------------------------------------------------------------------------------- the worker
@functools.cache
def _job_worker_class():
    """napari's ``GeneratorWorker`` whose thread ends quietly where its signals object was
    deleted.

    napari does not wait for worker threads when its window closes, and as the interpreter
    exits Qt deletes the Qt objects Python owns, the worker's signals among them, before it
    waits for the threads: a job still running then (a read of a lazy image's slices for
    its hash, or of a checkpoint file, which report nothing until they end) raised
    "RuntimeError: wrapped C/C++ object of type GeneratorWorkerSignals has been deleted"
    from its next ``emit``, out of the thread's ``run``, and the process aborted. Where it was
    the emit of a progress report that raised (a lazy image's hash reports each slice it
    read), superqt printed "RuntimeWarning: RuntimeError in aborted thread" instead: the
    thread now ends as quietly there too."""
    from napari.qt.threading import GeneratorWorker

    class JobWorker(GeneratorWorker):
        def work(self):
            result = super().work()  # (a RuntimeError returned: a report's emit raised,
            return None if isinstance(result, RuntimeError) else result  # never the job)

        def run(self) -> None:
            try:
                super().run()
            except RuntimeError:  # only its emits raise (the job never does, ``_guarded``):
                pass  # its signals were deleted as the interpreter exits; nobody listens

    return JobWorker
