"""Batches on a dask.distributed cluster: one task per file, or per block of slices of a large
stack (``embed`` and ``auto``) followed by the file's final task."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_sam.batch.auto_runner import (
    PROPAGATE_DEFAULT,
    auto_slices,
    prepare_auto_work,
    saved_slices,
)
from napari_sam.batch.context import Context, Job, JobResult
from napari_sam.batch.embed_runner import blocks_earlier
from napari_sam.batch.embedding_stores import embed_store, user_embeddings
from napari_sam.batch.job_checks import output_name_problem
from napari_sam.batch.jobs import clear_leftovers, job_output_state, work_dir
from napari_sam.batch.memory_advice import lost_workers_reason
from napari_sam.batch.models import get_model
from napari_sam.batch.progress import stderr_is_terminal
from napari_sam.batch.reading import open_image
from napari_sam.batch.runners import one_line, record_result, run_job
from napari_sam.batch.saved_work import (
    auto_work_key,
    finished_mark_taken,
    put_back_finished_mark,
    work_records,
)
from napari_sam.batch.scheduler_probe import not_a_scheduler, tcp_host_port
from napari_sam.batch.worker_processes import end_worker_processes, worker_processes
from napari_sam.words import for_count

#: How long to try to reach a ``--scheduler`` before giving up (a dask time string).
SCHEDULER_TIMEOUT = "30s"


def _client_for(scheduler: str | None, workers: int | None, threads_per_worker: int = 1,
                verbose: bool = False):
    from distributed import Client

    if scheduler:
        how = ("start one there (e.g. `dask scheduler --port PORT` and `dask worker ADDRESS` "
               "on the workers), check the address, or leave out --scheduler to run here "
               "(--workers N for a local cluster)")
        if connection_refused(scheduler):  # at once, not after the timeout
            raise RuntimeError(f"cannot reach a dask scheduler at {scheduler} (the connection "
                               f"was refused: nothing listens there); {how}")
        from dask.utils import parse_timedelta

        # dask's client would hang or fail oddly; a busy scheduler may take seconds to answer
        other = not_a_scheduler(scheduler, patience=parse_timedelta(SCHEDULER_TIMEOUT))
        if other:
            raise RuntimeError(f"no dask scheduler answers at {scheduler} ({other}); {how}")
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except OSError:  # refused or timed out: nothing listens there
            raise RuntimeError(f"cannot reach a dask scheduler at {scheduler} (no answer "
                               f"within {SCHEDULER_TIMEOUT}); {how}") from None
        say_if_no_workers(client, scheduler)
        return client, None
    cluster = start_local_cluster(int(workers), threads_per_worker, verbose)
    try:
        return Client(cluster), cluster
    except BaseException:
        close_quietly(None, cluster)
        raise


def connection_refused(address: str, timeout: float = 2.0) -> bool:
    """Whether a ``tcp://HOST:PORT`` scheduler address refuses a connection at once (nothing
    listens there; dask's client would wait its whole timeout, 30 s, to say so). False for
    other schemes, an answer, or no answer within ``timeout`` seconds (the client decides)."""
    import socket

    where = tcp_host_port(address)
    if where is None:
        return False
    try:
        with socket.create_connection(where, timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def say_if_no_workers(client, scheduler: str) -> None:
    """A line on stderr when the scheduler has no workers yet (dask worker jobs still queued):
    the files wait for them, which would otherwise look like a hang."""
    try:
        n = len(client.scheduler_info().get("workers", {}))
    except Exception:  # noqa: BLE001  (an old scheduler: nothing to say)
        return
    if n == 0:
        print(f"napari-sam: the dask scheduler at {scheduler} has no workers yet; the files "
              f"wait until workers connect (start them with `dask worker {scheduler}`, or "
              "check that their jobs are running); Ctrl-C stops, and a rerun resumes",
              file=sys.stderr, flush=True)


def say_lost_workers(client, names: Mapping) -> None:
    """A line on stderr whenever a worker is lost while it runs tasks of ``names`` (task key
    -> the input file's name): dask retries them on another worker, which was silent (a
    file taking twice as long, or failing after three lost workers, with no word why)."""
    def on_event(event) -> None:
        msg = event[1] if isinstance(event, tuple) and len(event) > 1 else {}
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker" or msg.get(
                "expected"):
            return
        files = sorted({names[k] for k in msg.get("processing-tasks") or () if k in names})
        if files:
            shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3
                                            else "")
            them = for_count(len(files), "it", "them")  # (queued there, or running)
            print(f"napari-sam: lost the worker {msg.get('worker', '?')} while it ran "
                  f"{shown}; dask retries {them} on another worker (after 3 lost workers a "
                  "file fails, and the summary says so)", file=sys.stderr, flush=True)

    with contextlib.suppress(Exception):  # an old scheduler: nothing to say
        client.subscribe_topic("all", on_event)


def worker_start_method() -> str:
    """How a local cluster starts its worker processes: ``"forkserver"`` where the platform
    has it (they are forked from one server process started with SIGINT ignored, so they
    ignore it too, and the client stays interruptible while they start), else ``"spawn"``
    (dask's default; SIGINT is then ignored while the cluster starts)."""
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def start_local_cluster(workers: int, threads_per_worker: int = 1, verbose: bool = False):
    """A ``LocalCluster`` of ``workers`` processes whose workers leave Ctrl-C to this one.

    A Ctrl-C in a terminal reaches the whole process group. The workers ignore it (see
    :func:`worker_start_method`), so they print no tracebacks of their own and the client
    stops the batch and closes the cluster. With ``"forkserver"`` a Ctrl-C while the cluster
    starts is not lost: the start runs in a helper thread, the ``KeyboardInterrupt`` waits
    for it to end, closes the cluster and is raised again. Unless ``verbose``, the worker
    processes log errors only (after a Ctrl-C their tasks end with "CancelledError" warnings
    that say nothing a user needs).
    """
    import threading

    import dask
    from distributed import LocalCluster

    def start():
        return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                            # no dashboard, and its HTTP server on a free port (a taken
                            # 8787 printed distributed's "Port 8787 is already in use")
                            processes=True, dashboard_address=":0",
                            scheduler_kwargs={"dashboard": False},
                            silence_logs=logging.WARNING if verbose else logging.ERROR)

    method = worker_start_method()
    # the method is read whenever a worker process starts (a restarted one too): set for
    # the rest of this process
    dask.config.set({"distributed.worker.multiprocessing-method": method})
    if method != "forkserver":
        with sigint_ignored():  # the worker processes inherit it: Ctrl-C is the client's
            return start()
    from multiprocessing import forkserver

    from distributed.utils import get_mp_context

    get_mp_context()  # dask's modules to preload in the server, set before it starts
    with sigint_ignored():  # the server inherits it and its children keep it
        forkserver.ensure_running()
    box: dict = {}

    def run():
        try:
            box["cluster"] = start()
        except BaseException as exc:  # noqa: BLE001 - raised again on the main thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="napari-sam cluster start", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        thread.join()  # the workers are starting: let them, then close them
        if "cluster" in box:
            close_quietly(None, box["cluster"])
        raise
    if "error" in box:
        raise box["error"]
    return box["cluster"]


@contextlib.contextmanager
def sigint_ignored():
    """Ignore SIGINT in this process meanwhile (nothing outside the main thread).

    Processes started meanwhile inherit it (an ignored signal stays ignored in a process
    that a spawned worker executes, and Python then installs no KeyboardInterrupt handler).
    """
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def close_quietly(client, cluster, verbose: bool = False) -> None:
    """Close the client and the local cluster (if any) without dask's shutdown chatter.

    Unless ``verbose``, the ``distributed`` loggers are silenced first: after Ctrl-C dask
    warns about cancelled tasks and workers still busy in a slice ("still alive after 4.0
    seconds, killing"), which says nothing a user needs after the summary; their levels are
    restored afterwards. Errors while closing are swallowed (the results are known)."""
    loggers = [] if verbose else [logging.getLogger(n) for n in ("distributed", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=15)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def run_task(task, job: Job, ctx: Context, *args):
    """``task(job, ctx, *args)`` on a worker, with the batch's ``--precision`` for what
    ``"auto"`` means in the worker's thread (the worker's environment is not the client's,
    whose ``NAPARI_SAM_PRECISION`` the CLI sets)."""
    from napari_sam.device import precision_in_this_thread

    check_model_on_worker(ctx.model)
    with precision_in_this_thread(ctx.precision):
        return task(job, ctx, *args)


def check_model_on_worker(model: str) -> None:
    """Raise ``FileNotFoundError`` naming this worker when the checkpoint file ``model`` (a
    path the client checked) is not there: the worker sees another file system. Nothing for
    a registry name (each worker loads or downloads it) or a file that is there.

    Without it the job failed with "checkpoint file not found: PATH; check the path", which
    the user, whose machine has the file, could not make sense of."""
    from napari_sam.batch.models import model_key
    from napari_sam.models.registry import REGISTRY

    if not model or model in REGISTRY:
        return
    path = Path(model_key(model))
    if path.is_file():
        return
    import socket

    try:
        from distributed import get_worker

        where = f"{socket.gethostname()} ({get_worker().address})"
    except (ImportError, ValueError):  # not on a worker
        where = socket.gethostname()
    raise FileNotFoundError(
        f"the worker on {where} cannot read the checkpoint file {path}, which the client "
        "could: the workers need the same paths as the client; keep the model (and the "
        "images and -o folder) on a file system they all mount, at the same path")


def embed_prepare_task(job: Job, ctx: Context) -> list[float]:
    """Create the partial embedding store of a blocked ``embed`` job; returns contrast limits."""
    from napari_sam.embeddings import StackEmbeddings

    model, _ = get_model(ctx.model, ctx.device)
    opened = open_image(job.input, ctx)
    partial = job.output.with_name(f".{job.output.name}.partial")
    job.output.parent.mkdir(parents=True, exist_ok=True)
    emb = StackEmbeddings(opened.stack, model, store=partial, batch_size=ctx.batch_size,
                          device=ctx.device, cache_size=2)
    opened.stack.release()
    return list(emb.contrast_limits)


def embed_block_task(job: Job, ctx: Context, limits: Sequence[float], start: int,
                      stop: int) -> dict:
    """Encode slices [start, stop) into the shared store's feature chunks (one chunk per
    slice, so blocks never write the same chunk); returns ``{"hashes": {slice: pixel hash},
    "started": its start (time.time())}`` for the final task, the only writer of the store's
    hash array."""
    import zarr

    from napari_sam.embeddings import StackEmbeddings, slice_hash

    started = time.time()
    model, _ = get_model(ctx.model, ctx.device)
    opened = open_image(job.input, ctx)
    partial = job.output.with_name(f".{job.output.name}.partial")
    group = zarr.open_group(str(partial), mode="r+")
    stored = np.asarray(group["slice_hash"][start:stop])
    emb = StackEmbeddings(opened.stack, model, batch_size=ctx.batch_size, device=ctx.device,
                          contrast_limits=tuple(limits), cache_size=max(2, ctx.batch_size))
    emb.whole_slices = True  # a resumed run's blocks give an uninterrupted run's features
    hashes = {}
    for z in range(start, stop):
        h = slice_hash(emb.slice_image(z))
        if int(stored[z - start]) == h:
            continue  # done by an earlier, interrupted run
        feats = emb[z].features
        group["features"][z] = feats.detach().cpu().numpy().astype(np.float16)
        hashes[z] = h
    opened.stack.release()
    return {"hashes": hashes, "started": started}


def auto_prepare_task(job: Job, ctx: Context) -> str | None:
    """Create the embedding store that the blocks of a propagating ``auto`` job fill (the
    store the final task propagates from); None when there is nothing to keep (no
    propagation, a 2D image, or a complete ``--embeddings`` store to reuse)."""
    from napari_sam.embeddings import StackEmbeddings

    if not ctx.params.get("propagate", PROPAGATE_DEFAULT):
        return None
    model, _ = get_model(ctx.model, ctx.device)
    opened = open_image(job.input, ctx)
    try:
        if opened.is2d or user_embeddings(job, ctx, model) is not None:
            return None
        store = embed_store(job, ctx, model)
        StackEmbeddings(opened.stack, model, store=store, batch_size=ctx.batch_size,
                        device=ctx.device, cache_size=2)
    finally:
        opened.stack.release()
    return str(store)


def auto_block_task(job: Job, ctx: Context, store: str | None, start: int,
                     stop: int) -> dict:
    """Segment slices [start, stop) of an ``auto`` job into its work folder, and write their
    embeddings into ``store`` (from :func:`auto_prepare_task`) when there is one. Returns
    ``{"store": store, "hashes": {slice: pixel hash}, "started": its start (time.time())}``
    for the final task."""
    started = time.time()
    model, _ = get_model(ctx.model, ctx.device)
    hashes: dict[int, int] = {}
    auto_slices(job, ctx, model, range(start, stop),
                block_store=None if store is None else Path(store), hashes=hashes)
    return {"store": store, "hashes": hashes, "started": started}


def record_hashes(store: os.PathLike | str, blocks: Iterable[Mapping[int, int]]) -> None:
    """Write the slice hashes the block tasks return into ``store``'s hash array (one writer:
    the final task), which marks those slices' features as present."""
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    hashes = np.asarray(group["slice_hash"][:])
    for block in blocks:
        for z, h in block.items():
            hashes[int(z)] = h
    group["slice_hash"][:] = hashes


def final_task(job: Job, ctx: Context, blocks: list | None = None,
                after: list | None = None, earlier: dict | None = None,
                finished: bool = False) -> JobResult:
    """The per-file task: runs the whole job once its blocks (if any) are done.

    ``blocks``: results of ``embed_block_task`` (slice hashes to record); ``after``: results
    of ``auto_block_task`` (their slices are on disk; the hashes of the embeddings they
    stored are recorded here). The result's seconds run from the first block's start (the
    blocks run side by side on the workers), as a run without blocks reports its wall time.
    ``earlier``: what an interrupted run had left of an ``auto`` job before its blocks ran
    (:func:`~napari_sam.batch.auto_runner.saved_slices`): the job's line says what it kept,
    not the slices the blocks computed; ``finished``: that work folder was a finished run's
    (``--keep-work``; its mark taken before the blocks ran, :func:`run_job`)."""
    if ctx.command == "embed" and blocks:
        partial = job.output.with_name(f".{job.output.name}.partial")
        earlier = blocks_earlier(partial, blocks)  # (not the slices the blocks computed)
        record_hashes(partial, [b["hashes"] for b in blocks])
    stored = [b for b in after or () if isinstance(b, dict) and b.get("store")]
    if ctx.command == "auto" and stored:
        record_hashes(stored[0]["store"], [b["hashes"] for b in stored])
    starts = [float(b["started"]) for b in [*(blocks or ()), *(after or ())]
              if isinstance(b, dict) and "started" in b]
    res = run_job(job, ctx, earlier=earlier, finished=finished)
    if starts:  # from the first block's start: the blocks ran side by side, then this task
        res.seconds = max(res.seconds, time.time() - min(starts))
    return res


def _n_slices(job: Job, ctx: Context) -> int:
    try:
        return len(open_image(job.input, ctx).stack)
    except Exception:  # the final task reports the problem
        return 0


def blocked_slices(job: Job, ctx: Context, block_slices: int | None) -> int:
    """How many slices ``job`` has to split into blocks of ``block_slices`` (``embed`` and
    ``auto`` with ``--block-slices``); 0 for a job run whole: no blocks asked, an output
    name its final task refuses, or an output that is kept (complete, edited, another
    command's, not napari-sam's)."""
    if not block_slices or ctx.command not in ("auto", "embed"):
        return 0
    if output_name_problem(job, ctx) is not None:  # its final task says why
        return 0
    state = job_output_state(job, ctx)
    if state == "foreign" or (not ctx.overwrite and state in (
            "complete", "edited", "other-command")):  # foreign: never replaced
        return 0
    return _n_slices(job, ctx)


def submit_job(client, job: Job, ctx: Context, wctx: Context, block_slices: int | None,
               marks: contextlib.ExitStack):
    """Submit ``job``'s tasks to ``client``: for a stack of more than ``block_slices``
    slices (``embed``, ``auto``) the task that prepares its blocks, the blocks and the
    final task that waits for them; else its final task alone. ``wctx``: the workers'
    context. A blocked ``auto`` job takes its work folder's ``--keep-work`` mark here, before
    its blocks add to it, held in ``marks`` until the run ends
    (:func:`~napari_sam.batch.saved_work.finished_mark_taken`: put back when Ctrl-C stops
    the run with nothing added there).

    Returns
    -------
    tuple
        (the final task's future, the blocks' futures, the work folder's records when it was
        a finished run's, :func:`~napari_sam.batch.saved_work.work_records`, else None).
    """
    n = blocked_slices(job, ctx, block_slices)
    if not block_slices or n <= block_slices:
        return client.submit(run_task, final_task, job, wctx, None, None, pure=False), [], None
    spans = [(s, min(s + block_slices, n)) for s in range(0, n, block_slices)]
    if ctx.command == "embed":
        limits = client.submit(run_task, embed_prepare_task, job, wctx, pure=False)
        blocks = [client.submit(run_task, embed_block_task, job, wctx, limits, s, e,
                                pure=False) for s, e in spans]
        return client.submit(run_task, final_task, job, wctx, blocks, None, pure=False), \
            blocks, None
    # (the input's content sampled once; blocks never tile: ``tiling`` None)
    key = auto_work_key(job, ctx)
    earlier = saved_slices(job, ctx, n, key)  # before the blocks add this run's
    finished = marks.enter_context(finished_mark_taken(work_dir(job)))  # (before they add)
    records = work_records(work_dir(job)) if finished else None  # (put back if it fails)
    prepare_auto_work(job, ctx, key)
    store = client.submit(run_task, auto_prepare_task, job, wctx, pure=False)
    blocks = [client.submit(run_task, auto_block_task, job, wctx, store, s, e, pure=False)
              for s, e in spans]
    fut = client.submit(run_task, final_task, job, wctx, None, blocks, earlier, finished,
                        pure=False)
    return fut, blocks, records


def close_cluster(client, cluster, jobs, *, stopped: bool, verbose: bool) -> None:
    """Close ``client`` and the local ``cluster`` (if any). When a run on a local cluster
    ``stopped`` before every job returned (Ctrl-C, an error): wait for the cluster's worker
    processes to end (up to 10 s, then kill them:
    :func:`~napari_sam.batch.worker_processes.end_worker_processes`), and clear the locks and
    "partial" sidecars of the tasks the close killed (a scheduler's workers are not ours;
    with every task returned no wait, so that another run's lock costs none)."""
    with contextlib.suppress(Exception):  # else the scheduler sends the client's own
        client.unsubscribe_topic("all")  # removal to it closed: a CRITICAL traceback
    workers = worker_processes(cluster) if stopped else []  # (taken before the close)
    try:
        close_quietly(client, cluster, verbose)
        until = time.monotonic() + 10 if stopped else None
        if until is not None:  # none writes after this: the summary is the truth at the exit
            end_worker_processes(workers, until)
        for job in jobs:
            clear_leftovers(job.output, until)
    finally:
        for worker in workers:
            worker.close()


def run_distributed(jobs, ctx, *, scheduler, workers, block_slices, on_result):
    """Submit every job (and the blocks of large stacks) to a dask cluster; results in input
    order, reported through ``on_result`` as they finish. The ``--keep-work`` marks that
    blocked jobs took are put back, as in a serial run, for the jobs a Ctrl-C stopped before
    they added anything to their work folders (once no worker of this run writes)."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    if block_slices and ctx.command in ("auto", "embed"):
        ctx = replace(ctx, tiling=None)  # blocks fill an untiled store's per-slice chunks
    wctx = replace(ctx, quiet=True, slice_workers=1)  # a worker process: one task, one thread
    client, cluster = _client_for(scheduler, workers, verbose=ctx.verbose)
    results: dict[int, JobResult] = {}
    bar = tqdm(total=len(jobs), desc="files", unit="file", position=0, dynamic_ncols=True,
               disable=ctx.quiet or not stderr_is_terminal())
    with contextlib.ExitStack() as marks:  # (left after the workers have ended)
        try:
            futures, names, kept = {}, {}, {}
            for i, job in enumerate(jobs):
                fut, blocks, records = submit_job(client, job, ctx, wctx, block_slices, marks)
                if records is not None:
                    kept[i] = records
                futures[fut] = i
                names.update({f.key: job.input.name for f in [*blocks, fut]})
            say_lost_workers(client, names)
            for fut in as_completed(list(futures)):
                i = futures[fut]
                job = jobs[i]
                try:
                    res = fut.result()
                except Exception as exc:  # a worker died, or a block task failed
                    killed = type(exc).__name__ == "KilledWorker"  # (dask's, for memory)
                    res = JobResult(str(job.input), str(job.output), "failed",
                                    reason=lost_workers_reason(wctx) if killed else
                                    f"task failed on the cluster: {one_line(exc)}")
                if res.status == "failed" and i in kept:  # (an error: --keep-work's mark back)
                    put_back_finished_mark(work_dir(job), kept[i])
                record_result(results, i, res, bar, on_result)
        finally:
            bar.close()
            close_cluster(client, cluster, jobs, stopped=len(results) < len(jobs)
                          and scheduler is None, verbose=ctx.verbose)
    return [results[i] for i in range(len(jobs))]
