"""Render docs/images/trace_dock.png: the propagation trace in the dock, on a real stack.

Run from the repository root (a display is needed; Xvfb works):

    xvfb-run -a python docs/make_trace_screenshot.py [--data FOLDER]

Opens the real nuclei stack in FOLDER (``image.tif`` and ``labels.tif``: the 3D sample of the
stardist 0.9.2 wheel, ``stardist/data/images/img3d.tif`` and ``mask3d.tif``; not in this
repository; the synthetic nuclei sample stands in when it is missing), draws a box around three nuclei on the middle slice
(taken from the ground truth), propagates them with the bundled demo model and grabs the
window with the dock scrolled to "Propagation trace".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "images" / "trace_dock.png"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-nuclei-3d"


def _process():
    from qtpy.QtWidgets import QApplication

    for _ in range(10):
        QApplication.processEvents()


def _stack(data: Path):
    if (data / "image.tif").is_file():
        import tifffile

        return tifffile.imread(data / "image.tif"), tifffile.imread(data / "labels.tif"), "nuclei"
    from napari_sam.synthetic import nuclei_3d

    scene = nuclei_3d(seed=10000)
    return scene.image, scene.labels, "synthetic nuclei"


def main(argv=None) -> None:
    import napari

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    image, truth, name = _stack(args.data)
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 1000)
    viewer.add_image(image, name=name)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-sam-stacks", "Segment Anything")
    widget.controller.sync = True
    z = image.shape[0] // 2
    ids, areas = np.unique(truth[z][truth[z] > 0], return_counts=True)
    boxes = []
    for oid in ids[np.argsort(-areas)][:3]:
        rows, cols = np.nonzero(truth[z] == oid)
        r0, c0, r1, c1 = rows.min() - 1, cols.min() - 1, rows.max() + 1, cols.max() + 1
        boxes.append([[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]])
    viewer.dims.set_point(0, z)
    widget.controller.boxes_layer.add(boxes, shape_type="rectangle")
    widget._scope.setCurrentIndex(1)
    widget._on_propagate()
    _process()
    viewer.reset_view()
    widget._scroll.ensureWidgetVisible(widget._trace, 0, 0)
    _process()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    print("wrote", args.out)
    for obj in widget.controller.trace["objects"]:
        print(obj["id"], obj["slices"][0], obj["slices"][-1], obj["stops"],
              [(f["slice"], f["kind"]) for f in obj["flags"]])
    viewer.close()


if __name__ == "__main__":
    main()
