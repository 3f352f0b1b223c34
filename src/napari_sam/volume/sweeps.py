"""The up and down sweeps of a propagation, run at once where they are independent.

Owns :func:`run_sweeps`. During the sweeps an object's up chain and down chain never read
each other's results, nor those of other objects' chains of the other direction: each starts
from its own seed, and the claimed rule, which compares objects, runs after both sweeps. The
one exception is a down chain that meets an up chain of its object between two annotated
slices (it starts where its partner ended). So where no chain has a partner and the CPU has
at least two workers to decode on (:func:`napari_sam.decode_pool.decode_workers`), the down
sweep runs in a second thread while the up sweep runs in the calling thread, each at half
the calling thread's torch threads (at least one): one sweep's Python steps (stop rules,
upsampling, mask statistics) overlap with the other's decodes, and on a busy machine two
runnable threads get a larger share of it (docs/benchmarks.md, "Up and down sweeps at
once").

The chains, their decoder calls and the batches are those of running the sweeps one after
the other, so at the same torch threads per decode the labels, scores and stop reasons are
the same (tested bit for bit at one thread); only the order in which the accepted masks
arrive differs, and nothing reads it. A caller with more threads gives each sweep half of
them, and a decode at fewer threads may round differently, as any change of thread count
does (slices encoded on the way use the caller's threads, so the embeddings never differ).
Progress is reported from the calling thread only (the slices both sweeps' chains have
settled, :meth:`~napari_sam.volume.propagator.Propagator.report_progress`), so a callback that
cancels by raising (the GUI's) still cancels both. GPUs keep one sweep after the other (SAM 2.1 propagates in
:mod:`napari_sam.sam2_volume`). Sweeps decode without the predictor's click caches
(:func:`napari_sam.predictor.no_click_cache`), whose use would depend on how the two sweeps
interleave.
"""

from __future__ import annotations

import threading

import torch

from napari_sam.decode_pool import decode_workers
from napari_sam.volume.chains import Chain

__all__ = ["run_sweeps", "sweeps_at_once"]

#: Seconds between two looks at the other sweep while the calling thread waits for it.
_POLL_S = 0.05


class _Stopped(Exception):
    """Ends a sweep early: the other sweep failed or was cancelled."""


class _OneAtATime:
    """``source[z]`` read by one thread at a time, at ``threads`` torch threads, other
    attributes passed through: the embeddings (lazy, with a cache of recent slices) and the
    images the sweeps read. A slice the embeddings encode on the way is encoded at the
    caller's threads, not a sweep's half (the encoder's float rounding depends on them)."""

    def __init__(self, source, lock: threading.Lock, threads: int):
        self._source = source
        self._lock = lock
        self._threads = threads

    def __getitem__(self, z):
        with self._lock:
            mine = torch.get_num_threads()
            if mine == self._threads:
                return self._source[z]
            torch.set_num_threads(self._threads)
            try:
                return self._source[z]
            finally:
                torch.set_num_threads(mine)

    def __getattr__(self, name: str):
        return getattr(self._source, name)


def sweeps_at_once(prop, down: list[Chain]) -> bool:
    """Whether :func:`run_sweeps` runs the two sweeps of ``prop`` (a
    :class:`~napari_sam.volume.propagator.Propagator`) at once: on a CPU, with at least two
    decode workers, and no down chain that starts where an up chain ends."""
    return (prop.device.type == "cpu" and decode_workers() >= 2
            and all(c.partner is None for c in down))


def run_sweeps(prop, up: list[Chain], down: list[Chain]) -> None:
    """Run ``prop``'s up sweep and down sweep, at once where :func:`sweeps_at_once` says so,
    else one after the other; an error or a cancel in either stops both and is raised here
    after both threads have stopped."""
    if not sweeps_at_once(prop, down):
        prop.sweep(up, +1)
        prop.sweep(down, -1)
    else:
        prop.start_sweep(up)
        prop.start_sweep(down)
        if not any(c.alive for c in up) or not any(c.alive for c in down):
            prop.sweep(up, +1, started=True)
            prop.sweep(down, -1, started=True)
        else:
            _both(prop, up, down)
    prop.report_progress(finish=True)


def _both(prop, up: list[Chain], down: list[Chain]) -> None:
    """The down sweep in a helper thread, the up sweep here (both started)."""
    stop = threading.Event()
    failure: list[BaseException] = []
    threads = torch.get_num_threads()
    per_sweep = max(1, threads // 2)

    def down_report(_swept: int) -> None:
        if stop.is_set():
            raise _Stopped

    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def down_sweep() -> None:  # in the caller's autograd and inference modes (thread-local)
        torch.set_num_threads(per_sweep)
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                prop.sweep(down, -1, report=down_report, started=True)
        except _Stopped:
            pass
        except BaseException as err:  # noqa: BLE001 - raised in the calling thread
            failure.append(err)

    report = prop.report_progress  # both sweeps' chains, from this thread: a cancel raises

    def up_report(_swept: int) -> None:
        if failure:
            raise _Stopped
        report()

    helper = threading.Thread(target=down_sweep, name="napari-sam down sweep", daemon=True)
    emb, stack = prop.emb, prop.stack
    lock = threading.Lock()
    prop.emb = _OneAtATime(emb, lock, threads)
    if stack is not None:
        prop.stack = _OneAtATime(stack, lock, threads)
    torch.set_num_threads(per_sweep)
    try:
        helper.start()
        try:
            prop.sweep(up, +1, report=up_report, started=True)
        except _Stopped:
            pass
        while helper.is_alive():
            helper.join(_POLL_S)
            report()
        report()  # the slices the helper finished after the last look
    except BaseException:
        stop.set()
        helper.join()
        raise
    finally:
        torch.set_num_threads(threads)  # also what threads started later begin with
        prop.emb, prop.stack = emb, stack
    if failure:
        raise failure[0]
