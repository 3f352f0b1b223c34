"""What segment everything returns: the 2D mask records, the 3D object records, the result
object with its pipeline counts, and small helpers to build them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_sam.words import counted


@dataclass
class MaskRecord:
    """One object of a 2D segmentation (or one slice of a 3D object).

    Attributes
    ----------
    id : int
        Label value in :attr:`AutomaticResult.labels` (0 while not painted).
    bbox : (int, int, int, int)
        (row0, col0, row1, col1) of the mask, end exclusive.
    area : int
        Pixels of the mask (before overlaps with other masks are resolved).
    visible_area : int
        Pixels carrying this id in the label image.
    predicted_iou : float
        The model's own quality estimate (filtered by ``pred_iou_thresh``).
    stability_score : float
        IoU of the masks thresholded at ``+/- stability_score_offset``.
    point_coords : (float, float)
        (row, col) of the prompt that produced the mask, in image pixels.
    crop_box : (int, int, int, int)
        (row0, col0, row1, col1) of the image crop it was predicted in.
    segmentation : numpy.ndarray of bool or None
        The full mask cropped to ``bbox`` (before overlap resolution).
    z : int or None
        Slice index for masks of a stack.
    """

    id: int
    bbox: tuple[int, int, int, int]
    area: int
    predicted_iou: float
    stability_score: float
    point_coords: tuple[float, float]
    crop_box: tuple[int, int, int, int]
    segmentation: np.ndarray | None = field(default=None, repr=False)
    visible_area: int = 0
    z: int | None = None

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The full (Y, X) boolean mask."""
        out = np.zeros(shape, bool)
        r0, c0, r1, c1 = self.bbox
        if self.segmentation is not None:
            out[r0:r1, c0:c1] = self.segmentation
        return out


@dataclass
class ObjectRecord:
    """One 3D object of a stack segmentation.

    Attributes
    ----------
    id : int
        Label value in the (Z, Y, X) label image.
    bbox : (int, int, int, int, int, int)
        (z0, row0, col0, z1, row1, col1), ends exclusive.
    volume : int
        Voxels with this id.
    z_extent : int
        ``z1 - z0``.
    predicted_iou : float
        Mean predicted IoU over the object's slices: of the propagated masks, and of the 2D
        detection on the slice propagation started from (``propagate=True``); of the linked
        2D masks otherwise.
    stability_score : float
        Mean over the linked 2D masks.
    slices : list of MaskRecord
        The 2D masks that were linked into this object (``z`` set).
    """

    id: int
    bbox: tuple[int, int, int, int, int, int]
    volume: int
    z_extent: int
    predicted_iou: float
    stability_score: float
    slices: list[MaskRecord] = field(default_factory=list, repr=False)


@dataclass
class AutomaticResult:
    """What :func:`segment_everything` returns.

    Attributes
    ----------
    labels : numpy.ndarray int32
        (Y, X) or (Z, Y, X); 0 is background, objects are ``1..N`` without overlaps.
    records : list of MaskRecord (2D) or ObjectRecord (3D)
        ``records[i].id == i + 1``.
    stats : dict
        Counts along the pipeline (points decoded, candidates after each filter, ...).
    hidden : list of MaskRecord
        2D only: masks the generator kept that smaller masks cover entirely, or all but
        less than ``min_visible_fraction`` of their area, so they have no pixel in ``labels``
        (``id`` 0). ``records + hidden`` is the full set Meta's generator would return.
    trace : dict or None
        Stacks segmented with ``trace=True`` (and propagation): why each object stopped
        where it did, slice by slice, as ``napari-sam auto`` records it in its output's
        sidecar (:func:`napari_sam.trace.automatic_trace`); None otherwise.
    """

    labels: np.ndarray
    records: list
    stats: dict = field(default_factory=dict)
    hidden: list = field(default_factory=list, repr=False)
    trace: dict | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def n_objects(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:  # one line, not the arrays (a notebook cell's last line)
        n, lab = len(self.records), np.asarray(self.labels)
        hidden = f", {len(self.hidden)} hidden" if self.hidden else ""
        return (f"AutomaticResult({counted(n, 'object')}{hidden}, labels "
                f"{tuple(lab.shape)} {lab.dtype}, {self.stats.get('points', 0)} points decoded)")


#: Counts along the pipeline in ``AutomaticResult.stats`` (zero at the start of a run).
STAT_KEYS = (
    "points",
    "decoded_masks",
    "after_iou",
    "after_stability",
    "after_nms",
    "after_crop_nms",
    "gap_points",
    "rescued",
)


def new_stats() -> dict:
    """A fresh ``stats`` dict: every key of :data:`STAT_KEYS` at 0."""
    return dict.fromkeys(STAT_KEYS, 0)


def empty_result(size, params, stats=None) -> AutomaticResult:
    """A result without objects: (Y, X) or (Z, Y, X) ``size`` of zeros (``params`` unused)."""
    return AutomaticResult(np.zeros(size, np.int32), [], stats or new_stats())


def finite_mean(values) -> float:
    """Mean of the finite values (nan when there are none)."""
    v = np.asarray([float(x) for x in values], np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")
