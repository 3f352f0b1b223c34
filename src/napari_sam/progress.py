"""The ``progress=`` argument of the library's long calls (``segment_everything``,
``segment_volume``, ``embed``, ``StackEmbeddings.compute``, ...): None or False (silent), True
(a ``tqdm.auto`` bar: a widget in Jupyter, text on a terminal) or a callable
``progress(done, total)``; anything else is a TypeError before any work starts."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import numpy as np

#: What a long call's ``progress`` argument may be.
ProgressArg = bool | Callable[[int, int], None] | None

ACCEPTED = ("None or False (silent), True (a tqdm progress bar) or a callable "
            "progress(done, total)")


class AutoProgressBar:
    """The bar a library call's ``progress=True`` stands for: a ``tqdm.auto`` bar (a widget in
    Jupyter, text on a terminal) called as ``bar(done, total)``, made at the first call
    (nothing is drawn for a call that reports nothing); its total follows the caller's,
    ``done`` may go back (a phase that starts again). The batch commands' bars on stderr,
    quiet or written as log lines, are :class:`napari_sam.batch.progress.JobProgressBar`."""

    def __init__(self, desc: str, unit: str):
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, dynamic_ncols=True)
        if self.bar.total != total:
            self.bar.total = total
        if done >= self.bar.n:
            self.bar.update(done - self.bar.n)
        else:
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        """Close the bar (once; a bar never drawn stays undrawn)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def as_progress(progress: ProgressArg, *, desc: str, unit: str = "step",
                name: str = "progress") -> Callable[[int, int], None] | None:
    """The callback ``(done, total)`` a ``progress`` argument stands for.

    Parameters
    ----------
    progress : None, bool or callable
        None or False: no callback (None is returned). True: a :class:`AutoProgressBar` named
        ``desc`` counting ``unit``. A callable: itself.
    desc, unit : str
        The bar's description and what it counts.
    name : str
        The argument's name, for the error.

    Raises
    ------
    TypeError
        For anything else, naming the argument and the accepted forms.
    """
    if progress is None or (isinstance(progress, (bool, np.bool_)) and not progress):
        return None
    if isinstance(progress, (bool, np.bool_)):
        return AutoProgressBar(desc, unit)
    if callable(progress):
        return progress
    raise TypeError(f"{name} must be {ACCEPTED}; got {progress!r} "
                    f"({type(progress).__name__})")


def check_progress(progress: ProgressArg, name: str = "progress") -> None:
    """Refuse (TypeError, see :func:`as_progress`) a ``progress`` argument that is not a
    :data:`ProgressArg`: for a call that hands it on to the call that reports (whose
    :func:`reports_progress` names the bar and its unit) but must refuse it before its own
    work."""
    as_progress(progress, desc="", name=name)


def reports_progress(desc: str, unit: str = "step") -> Callable[[Callable], Callable]:
    """Decorate a long call whose argument ``progress`` takes a :data:`ProgressArg`.

    The argument is checked (TypeError, see :func:`as_progress`) before the call runs, True
    becomes a :class:`AutoProgressBar` named ``desc`` counting ``unit``, and that bar is closed
    when the call returns or raises. The decorated function's signature is kept
    (``inspect.signature`` still lists ``progress``).
    """

    def decorate(fn: Callable) -> Callable:
        params = list(inspect.signature(fn).parameters.values())
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                      p.POSITIONAL_OR_KEYWORD)]
        at = names.index("progress") if "progress" in names else None

        @functools.wraps(fn)
        def call(*args, **kwargs):
            positional = at is not None and len(args) > at
            given = args[at] if positional else kwargs.get("progress")
            report = as_progress(given, desc=desc, unit=unit)
            if report is not given:
                if positional:
                    args = (*args[:at], report, *args[at + 1:])
                else:
                    kwargs["progress"] = report
            try:
                return fn(*args, **kwargs)
            finally:
                if isinstance(report, AutoProgressBar):
                    report.close()

        return call

    return decorate


class IncreasingProgress:
    """A long call's progress made of parts, reported to ``progress(done, total)`` only where
    ``done`` grows: no step is reported twice, and :meth:`finish` ends at (total, total).

    Called as ``counter(done)`` with ``done`` out of ``total``; :meth:`part` maps a part that
    counts its own steps ``(d, t)`` onto ``span`` steps from ``start`` (a propagation's Z
    steps onto the Z of a stack's second half).
    """

    def __init__(self, progress: Callable[[int, int], None], total: int):
        self.progress, self.total, self.done = progress, int(total), 0

    def __call__(self, done: int) -> None:
        done = min(int(done), self.total)
        if done > self.done:
            self.done = done
            self.progress(done, self.total)

    def part(self, start: int, span: int) -> Callable[[int, int], None]:
        """The callback ``(d, t)`` of a part worth ``span`` steps from ``start``."""
        return lambda d, t: self(start + (span if t <= 0 else min(span, d * span // t)))

    def finish(self) -> None:
        """Report (total, total) unless it was reported."""
        self(self.total)
