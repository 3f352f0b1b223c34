"""Import Meta's ``segment_anything`` (the numerical reference) in the test environment.

Why a stand-in for torchvision
------------------------------
``segment_anything/__init__.py`` imports its predictor and automatic mask generator, which
import ``torchvision`` at module level. Our environment has a CPU-only torch build that no
published torchvision wheel matches, so ``import torchvision`` fails (or is absent) and Meta's
package cannot even be imported, although its *models* never call torchvision.

When the real torchvision imports, it is used. Otherwise :func:`import_segment_anything`
installs into ``sys.modules`` a minimal, faithful stand-in for exactly the four functions
segment_anything uses:

* ``torchvision.transforms.functional.to_pil_image`` (numpy HWC uint8 -> PIL image) and
  ``resize`` (PIL image, size ``[h, w]`` -> PIL bilinear resize to (w, h)), which is the code
  path torchvision takes for PIL inputs in ``ResizeLongestSide.apply_image``;
* ``torchvision.ops.boxes.box_area`` and ``batched_nms``. ``batched_nms`` is written as a
  plain greedy loop per category, deliberately independent of our own vectorised NMS so that
  comparing against it is a real check.

Nothing here is imported by the package; it is test-only code.
"""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

__all__ = ["import_segment_anything", "batched_nms_reference", "TORCHVISION_IS_STANDIN"]

TORCHVISION_IS_STANDIN = False


def _to_pil_image(pic, mode=None):
    import numpy as np
    from PIL import Image

    if isinstance(pic, torch.Tensor):
        pic = pic.detach().cpu().numpy()
        if pic.ndim == 3 and pic.shape[0] in (1, 3, 4):
            pic = np.transpose(pic, (1, 2, 0))
    pic = np.asarray(pic)
    if pic.ndim == 3 and pic.shape[2] == 1:
        pic = pic[:, :, 0]
    return Image.fromarray(pic, mode=mode)


def _resize(img, size, interpolation=None, max_size=None, antialias=True):
    from PIL import Image

    if not isinstance(img, Image.Image):
        raise TypeError("the torchvision stand-in only resizes PIL images")
    if isinstance(size, int):
        size = [size, size]
    h, w = int(size[0]), int(size[1])
    return img.resize((w, h), Image.BILINEAR)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) x0, y0, x1, y1 -> (N,) areas."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, float(x1 - x0)) * max(0.0, float(y1 - y0))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def batched_nms_reference(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy NMS within each category; indices of kept boxes by decreasing score.

    A box is suppressed when its IoU with an already kept box of the same category is
    greater than ``iou_threshold`` (torchvision's rule).
    """
    boxes = boxes.detach().cpu().double()
    scores = scores.detach().cpu()
    idxs = idxs.detach().cpu()
    keep: list[int] = []
    for cat in idxs.unique().tolist():
        members = [i for i in range(len(boxes)) if int(idxs[i]) == cat]
        members.sort(key=lambda i: -float(scores[i]))
        kept_here: list[int] = []
        for i in members:
            if all(_iou(boxes[i], boxes[j]) <= iou_threshold for j in kept_here):
                kept_here.append(i)
        keep += kept_here
    keep.sort(key=lambda i: -float(scores[i]))
    return torch.tensor(keep, dtype=torch.int64)


def _install_torchvision_standin() -> None:
    global TORCHVISION_IS_STANDIN
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    boxes_mod = types.ModuleType("torchvision.ops.boxes")
    functional.resize = _resize
    functional.to_pil_image = _to_pil_image
    boxes_mod.batched_nms = batched_nms_reference
    boxes_mod.box_area = box_area
    ops.boxes = boxes_mod
    ops.batched_nms = batched_nms_reference
    ops.box_area = box_area
    transforms.functional = functional
    tv.transforms = transforms
    tv.ops = ops
    tv.__doc__ = "test-only stand-in installed by tests/_reference.py"
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": ops,
            "torchvision.ops.boxes": boxes_mod,
        }
    )
    TORCHVISION_IS_STANDIN = True


def import_segment_anything():
    """Return Meta's ``segment_anything`` package, or skip the calling test if not installed."""
    try:
        importlib.import_module("torchvision")
    except Exception:  # noqa: BLE001  (ImportError, or an op-registration RuntimeError)
        _install_torchvision_standin()
    try:
        return importlib.import_module("segment_anything")
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("segment_anything"):
            reason = "segment-anything is not installed (pip install segment-anything==1.0)"
            print(reason)
            pytest.skip(reason)
        raise
