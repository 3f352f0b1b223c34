"""How long the napari UI thread stalls while the widget's jobs run (embeddings, propagation).

A 10 ms QTimer ticks on the UI thread while the "Segment Anything" widget (opened from the
plugin menu, as users do) computes the embeddings of a stack and then propagates an object
through a second stack in napari's worker threads; the largest interval between two ticks is
the longest stall a user would feel. It depends on the machine and on what else runs on it,
so it is measured here and not asserted in a unit test (tests/_qt/test_responsive.py asserts
the property instead: no model forward or slice read on the UI thread while a job runs).

    xvfb-run -a python benchmarks/bench_gui_responsive.py              # 160 slices, 2 threads
    xvfb-run -a python benchmarks/bench_gui_responsive.py --slices 40 --threads 1
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests" / sub) for sub in ("_qt", "")]


def mid_predictor():
    """A random ViT slow enough (about 0.3 s per slice on a laptop core)."""
    import torch

    from napari_sam.models import SamConfig, build_sam
    from napari_sam.predictor import Predictor

    cfg = SamConfig(
        encoder="vit", img_size=256, patch_size=16, encoder_embed_dim=128, encoder_depth=4,
        encoder_num_heads=4, encoder_global_attn_indexes=(3,), window_size=8, decoder_depth=1,
        decoder_mlp_dim=256, name="mid_vit",
    )
    torch.manual_seed(0)
    return Predictor(build_sam(cfg), device="cpu")


class GapMeter:
    """Largest interval between ticks of a 10 ms QTimer on the UI thread."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self):
        gc.collect()  # garbage of the set-up is collected now, not inside the window
        self.ticks.append(time.perf_counter())
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()
        self.ticks.append(time.perf_counter())

    @property
    def max_gap(self) -> float:
        return float(np.diff(self.ticks).max())

    @property
    def elapsed(self) -> float:
        return self.ticks[-1] - self.ticks[0]


def _wait(app, controller, timeout=600.0):
    end = time.perf_counter() + timeout
    while controller.job is not None:
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > end:
            raise TimeoutError("the job did not end")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the worker")
    args = parser.parse_args(argv)

    import napari
    import torch
    from qtpy.QtWidgets import QApplication
    from sam_qt_helpers import blob_stack, open_from_menu, use_predictor

    torch.set_num_threads(args.threads)
    viewer = napari.Viewer(show=False)
    app = QApplication.instance()
    viewer.add_image(blob_stack(z=args.slices, size=96), name="first")
    _dock, widget = open_from_menu(viewer)
    use_predictor(widget, mid_predictor(), "mid")
    c = widget.controller
    viewer.dims.set_point(0, 5)

    with GapMeter() as embed:
        widget._on_compute()
        c.points_layer.add([5, 20, 20])
        _wait(app, c)
    viewer.add_image(blob_stack(z=10, size=96, seed=4), name="second")
    widget._image.setCurrentIndex(widget._image.findText("second"))
    c.points_layer.add([5, 44, 44])
    _wait(app, c)
    with GapMeter() as prop:
        c.propagate(all_objects=True, iou_threshold=0.0, area_factor=1e9, min_area=0)
        _wait(app, c)
    print(f"embeddings: {args.slices} slices in {embed.elapsed:.1f} s, "
          f"longest UI stall {embed.max_gap * 1000:.0f} ms")
    print(f"propagation: 10 slices in {prop.elapsed:.1f} s, "
          f"longest UI stall {prop.max_gap * 1000:.0f} ms")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
