"""Progress bars of batch jobs, per slice or per tile (tqdm on stderr; nothing when quiet)."""

from __future__ import annotations

from napari_sam.batch.context import Context


class ProgressBar:
    """Progress bar with ETA (tqdm, stderr), started now; nothing when quiet.

    Called as ``bar(done, total)`` by the embedding / propagation / segmentation loops.
    ``unit`` names what they count: "slice", or "tile" for the (slice, window) pairs of a
    tiled embedding; ``total`` must count the same things.
    """

    def __init__(self, ctx: Context, desc: str, total: int | None = None, unit: str = "slice"):
        self.bar = None
        self.desc = desc
        if not ctx.quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, position=1,
                            dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def phase(self, name: str, total: int) -> None:
        """Start counting phase ``name`` from 0 of ``total`` under the bar's description: its
        rate and time left are its own (encoding windows runs about 30 times faster than
        segmenting them: one bar over both said 12 s left where 3.5 min were)."""
        if self.bar is not None:
            self.bar.set_description(f"{self.desc}, {name}", refresh=False)
            self.bar.reset(total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
