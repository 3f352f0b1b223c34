"""Render the screenshots in docs/images/ of the Segment Anything widget in use.

Run from the repository root (a display is needed; Xvfb works):

    xvfb-run -a python docs/make_screenshots.py            # uses the bundled demo model
    xvfb-run -a python docs/make_screenshots.py --model vit_b_lm

Each scene opens one of the plugin's sample data sets, drives the widget as a user would
(clicks on objects taken from the synthetic ground truth), and grabs the whole window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

OUT = Path(__file__).resolve().parent / "images"
_OPTIONS = {"out": OUT}


def _centre(mask2d) -> list[int]:
    dist = ndi.distance_transform_edt(mask2d)
    return [int(v) for v in np.unravel_index(np.argmax(dist), dist.shape)]


def _process():
    from qtpy.QtWidgets import QApplication

    for _ in range(5):
        QApplication.processEvents()


def _shot(viewer, name: str) -> Path:
    _process()
    path = _OPTIONS["out"] / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print("wrote", path)
    return path


def _open(viewer, widget, key: str):
    viewer.layers.clear()
    viewer.dims.ndisplay = 2
    viewer.open_sample("napari-sam-stacks", key)
    widget._on_layers_changed()
    _process()
    viewer.reset_view()
    _process()
    return widget.controller


def _largest_objects(labels2d, n):
    ids, areas = np.unique(labels2d[labels2d > 0], return_counts=True)
    return ids[np.argsort(-areas)][:n]


def _widest_slice(labels, obj) -> int:
    return int(np.argmax((labels == obj).sum(axis=(1, 2))))


def scene_nuclei(viewer, widget):
    """Nuclei: two committed labels and a live preview of a third click."""
    from napari_sam._sample_data import synthetic_sample

    sample = synthetic_sample("nuclei_3d")
    c = _open(viewer, widget, "nuclei_3d")
    lab = sample.labels
    z = int(np.argmax([len(np.unique(s)) for s in lab]))
    viewer.dims.set_point(0, z * viewer.layers[0].scale[0])
    objs = _largest_objects(lab[z], 3)
    for obj in objs[:2]:
        c.points_layer.add([z, *_centre(lab[z] == obj)])
        widget._on_commit()
    c.points_layer.add([z, *_centre(lab[z] == objs[2])])
    if len(objs) > 2:
        row, col = _centre(lab[z] == objs[2])
        ring = np.argwhere(ndi.binary_dilation(lab[z] == objs[2], iterations=4) & (lab[z] == 0))
        if len(ring):
            widget._negative.setChecked(True)
            c.points_layer.add([z, *ring[len(ring) // 2]])
            widget._negative.setChecked(False)
    return _shot(viewer, "nuclei_click.png")


def scene_propagate(viewer, widget):
    """Nuclei 3D: one click per nucleus, propagated through the stack and committed; 3D view."""
    from napari_sam._sample_data import synthetic_sample

    sample = synthetic_sample("nuclei_3d")
    c = _open(viewer, widget, "nuclei_3d")
    lab = sample.labels
    areas = ndi.sum_labels(np.ones_like(lab), lab, index=np.arange(1, lab.max() + 1))
    order = np.argsort(-areas)[:5] + 1
    widget._scope.setCurrentIndex(0)  # the object on this slice
    for i, obj in enumerate(order):
        z = _widest_slice(lab, obj)
        viewer.dims.set_point(0, z * viewer.layers[0].scale[0])
        c.points_layer.add([z, *_centre(lab[z] == obj)])
        widget._on_propagate()
        if i == len(order) - 1:  # the last one stays in the preview for the picture
            _shot(viewer, "nuclei_propagate_preview.png")
        widget._on_commit()
    viewer.layers["SAM current object"].visible = False
    viewer.dims.ndisplay = 3
    viewer.camera.angles = (0, 35, 60)
    viewer.camera.zoom *= 0.9
    return _shot(viewer, "nuclei_propagated_3d.png")


def scene_underwater(viewer, widget):
    """Underwater RGB: a box around each of three fish, a click inside each box refines it."""
    from napari_sam._sample_data import synthetic_sample

    sample = synthetic_sample("underwater_rgb")
    c = _open(viewer, widget, "underwater_rgb")
    lab = sample.labels
    for obj in _largest_objects(lab, 3):
        rows, cols = np.nonzero(lab == obj)
        r0, c0, r1, c1 = rows.min() - 3, cols.min() - 3, rows.max() + 3, cols.max() + 3
        c.boxes_layer.add_rectangles(np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]]))
        c.points_layer.add(_centre(lab == obj))
    viewer.layers.selection.active = c.boxes_layer
    return _shot(viewer, "underwater_boxes.png")


def scene_automatic(viewer, widget):
    """EM stack: segment everything on the current slice."""
    try:
        import napari_sam.automatic as auto
    except ImportError:
        print("skip automatic scene: napari_sam.automatic is missing")
        return None
    if not hasattr(auto, "segment_everything"):
        print("skip automatic scene: segment_everything is missing")
        return None
    _open(viewer, widget, "em_stack")
    viewer.dims.set_point(0, 16 * viewer.layers[0].scale[0])
    widget._pps.setValue(24)
    widget._iou.setValue(0.5)  # the small demo model is less confident than SAM
    widget._stability.setValue(0.7)
    widget._on_automatic()
    return _shot(viewer, "em_automatic.png")


SCENES = {
    "nuclei": scene_nuclei,
    "propagate": scene_propagate,
    "underwater": scene_underwater,
    "automatic": scene_automatic,
}


def main(argv=None) -> int:
    import napari

    from napari_sam.annotate.model_choice import ModelChoice, file_choice
    from napari_sam._qt.widget import SamWidget

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="registry name or checkpoint file")
    parser.add_argument("--scenes", nargs="*", default=list(SCENES), choices=list(SCENES))
    parser.add_argument("--out", default=str(OUT), help="folder for the PNG files")
    args = parser.parse_args(argv)

    _OPTIONS["out"] = Path(args.out)
    _OPTIONS["out"].mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-sam-stacks")
    viewer.window._qt_window.resize(1500, 980)
    widget = SamWidget(viewer, sync=True)
    viewer.window.add_dock_widget(widget, name="Segment Anything", area="right")
    if Path(args.model).is_file():
        choice = file_choice(args.model)
    else:
        choice = ModelChoice(args.model, args.model, is_demo=args.model == "demo")
    widget._model.addItem(choice.label, choice)
    widget._model.setCurrentIndex(widget._model.count() - 1)
    widget.controller.set_model(choice)
    widget._update_demo_notice()
    for name in args.scenes:
        SCENES[name](viewer, widget)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
