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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
