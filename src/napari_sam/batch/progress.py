"""Progress bars of batch jobs, per slice or per tile: tqdm on a terminal's stderr, plain
lines now and then when stderr is a log (a file, a pipe, a cluster job's output); nothing when
quiet."""

from __future__ import annotations

import sys
import threading
import time

from napari_sam.batch.context import Context

#: On a stderr that is not a terminal, a phase that runs this long (seconds) gets a progress
#: line, then one this often, and one when it ends.
LOG_INTERVAL = 30.0


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (where tqdm's bars redraw in place) or a Jupyter kernel's
    (tqdm.auto draws notebook bars there); False for a file, a pipe or a closed stream."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class LogLines:
    """What :class:`JobProgressBar` asks of a tqdm bar, written for a log: no carriage returns
    or cursor moves (tqdm's redraws fill a log with ``\r`` and ``ESC[A``), a line such as
    ``a.tif: propagate: 12/64 slices, 00:31 elapsed, about 02:15 left`` once a phase has run
    :data:`LOG_INTERVAL` seconds, then every :data:`LOG_INTERVAL` seconds, and when a phase
    that had lines ends. Fast phases write nothing (the file's ``done`` line follows)."""

    def __init__(self, total: int | None, desc: str, unit: str):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self._lock = threading.Lock()
        self._start = self._last = time.monotonic()
        self._said = False

    def update(self, k: int) -> None:
        with self._lock:
            self.n += k
            now = time.monotonic()
            ended = self.total is not None and self.n >= self.total
            if now - self._last >= LOG_INTERVAL or (ended and self._said):
                self._write(now)

    def _write(self, now: float) -> None:
        from tqdm import tqdm

        elapsed = now - self._start
        of = f"/{self.total}" if self.total else ""
        text = f"{self.desc}: {self.n}{of} {self.unit}s, {tqdm.format_interval(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total:
            left = elapsed * (self.total - self.n) / self.n
            text += f", about {tqdm.format_interval(left)} left"
        print(text, file=sys.stderr, flush=True)
        self._last, self._said = now, True

    def set_description(self, desc: str, refresh: bool = False) -> None:
        self.desc = desc

    def reset(self, total: int | None = None) -> None:
        with self._lock:
            self.total, self.n, self._said = total, 0, False
            self._start = self._last = time.monotonic()

    def close(self) -> None:
        pass


class JobProgressBar:
    """A batch job's progress bar with ETA (tqdm on a terminal's stderr, else
    :class:`LogLines`), started now; nothing when quiet. (A library call's ``progress=True``
    bar is :class:`napari_sam.progress.AutoProgressBar`.)

    Called as ``bar(done, total)`` by the embedding / propagation / segmentation loops.
    ``unit`` names what they count: "slice", or "tile" for the (slice, window) pairs of a
    tiled embedding; ``total`` must count the same things. Without ``total`` (known only
    once the loop starts) a terminal's bar is drawn at the first call, with its total: tqdm
    drew "0slice [00:00, ?slice/s]" until then.
    """

    def __init__(self, ctx: Context, desc: str, total: int | None = None, unit: str = "slice"):
        self.bar = None
        self.desc, self.unit = desc, unit
        self._terminal = False
        if ctx.quiet:
            return
        if not stderr_is_terminal():
            self.bar = LogLines(total, desc, unit)
            return
        self._terminal = True
        if total is not None:
            self._open(total)

    def _open(self, total: int, desc: str | None = None) -> None:
        """The terminal's tqdm bar, drawn now with its total (once)."""
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc or self.desc, unit=self.unit, leave=False, position=1,
                        dynamic_ncols=True)
        self._terminal = False

    def set_unit(self, unit: str) -> None:
        """Count in ``unit`` from now on (e.g. "window": a tiled image's windows)."""
        self.unit = unit
        if self.bar is not None:
            self.bar.unit = unit

    def __call__(self, done: int, total: int) -> None:
        if self._terminal:
            self._open(total)
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def phase(self, name: str, total: int) -> None:
        """Start counting phase ``name`` from 0 of ``total`` under the bar's description: its
        rate and time left are its own (encoding windows runs about 30 times faster than
        segmenting them: one bar over both said 12 s left where 3.5 min were)."""
        if self._terminal:
            self._open(total, f"{self.desc}, {name}")
        elif self.bar is not None:
            self.bar.set_description(f"{self.desc}, {name}", refresh=False)
            self.bar.reset(total=total)

    def close(self) -> None:
        self._terminal = False
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ObjectSliceBar(JobProgressBar):
    """A propagation's :class:`JobProgressBar`: it counts object-slices (each object carried
    through each slice: ``Z x objects``, what :mod:`napari_sam.volume`'s propagation reports),
    not slices, and names them once the total is known:
    ``a.tif: propagate 58 objects x 32 slices: 1856/1856 object-slices`` (it said
    "1856/1856 slices" of a 32-slice stack)."""

    def __init__(self, ctx: Context, desc: str, n_slices: int):
        super().__init__(ctx, desc, None, unit="object-slice")
        self.n_slices, self._named = int(n_slices), False

    def __call__(self, done: int, total: int) -> None:
        if not self._named and total and self.n_slices:
            from napari_sam.words import counted

            self._named = True
            objects = counted(max(1, total // self.n_slices), "object")
            self.desc = f"{self.desc} {objects} x {counted(self.n_slices, 'slice')}"
            if self.bar is not None:
                self.bar.set_description(self.desc, refresh=False)
        super().__call__(done, total)
