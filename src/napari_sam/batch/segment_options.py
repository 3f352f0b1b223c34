"""The parameters of ``segment`` jobs: :data:`SEGMENT_OPTIONS` (the keywords passed on to
:func:`napari_sam.volume.segment_volume`) and :data:`SAM2_OPTIONS` (the choice of propagation and
SAM 2's own), the one list the command line builds its options from and
:mod:`napari_sam.batch.segment_runner` passes on.

Its own module, free of torch and of the rest of the package, so that ``napari-sam`` builds
its parser, prints its help and runs ``sample`` without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SAM2_KEYS", "SAM2_OPTIONS", "SEGMENT_KEYS", "SEGMENT_OPTIONS", "SegmentOption"]


@dataclass(frozen=True)
class SegmentOption:
    """One keyword of :func:`napari_sam.volume.segment_volume` that a ``segment`` job passes on.

    Attributes
    ----------
    name : str
        The keyword (and the key in :attr:`Context.params <napari_sam.batch.Context>`).
    flag : str or None
        The ``napari-sam segment`` option, or None when only Python callers set it.
    kind : str
        How the command line parses it: ``"choice"`` (one of ``choices``), ``"fraction"`` (a
        number in [0, 1]), ``"fraction_or_off"`` (the same, or ``off``: the rule disabled),
        ``"nonneg_int"`` (a whole number >= 0).
    default : object
        The command line's default (None: ``segment_volume``'s own default applies).
    choices : tuple of str
    metavar, help : str or None
        The option's help on the command line.
    """

    name: str
    flag: str | None = None
    kind: str = "choice"
    default: Any = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    help: str | None = None


#: The parameters of ``segment`` jobs, in the order the command line lists them: the one list
#: the CLI builds its options from and :func:`run_segment` passes to ``segment_volume``.
SEGMENT_OPTIONS = (
    SegmentOption("mode", "--mode", "choice", "auto",
                  choices=("auto", "box", "box+mask", "points", "center"),
                  help="how each slice is prompted from the previous mask: box (its box), "
                       "box+mask (its box and its low-resolution mask), points (points inside "
                       "and just outside it), center (one centre point); auto: box+mask "
                       "(default: auto)"),
    SegmentOption("axis_kind", "--axis-kind", "choice", None, choices=("z", "t"),
                  help="what the stack axis is (default: t for TYX inputs, else z)"),
    SegmentOption("iou_threshold", "--iou-threshold", "fraction", 0.5, metavar="F",
                  help="stop when the IoU with the previous slice's mask drops below F "
                       "(default: 0.5)"),
    SegmentOption("min_area", "--min-area", "nonneg_int", 5, metavar="PX",
                  help="stop when the mask gets smaller than PX pixels (default: 5)"),
    SegmentOption("fade_fraction", "--fade-fraction", "fraction_or_off", None, metavar="F|off",
                  help="stop where the object's contrast with its surroundings falls below F "
                       "times its strongest contrast on its prompted slices (default: 0.5 "
                       "along z, off along t)"),
    SegmentOption("rebound_fraction", "--rebound-fraction", "fraction_or_off", None,
                  metavar="F|off",
                  help="stop where the object's contrast, having dimmed by more than F times "
                       "its contrast on its prompted slices, rises again by as much: the mask "
                       "ran into the next object (default: 0.05 along z, off along t)"),
    SegmentOption("claimed_fraction", "--claimed-fraction", "fraction_or_off", 0.5,
                  metavar="F|off",
                  help="stop where more than F of the mask lies on another object that is "
                       "fewer slices from its own prompt (default: 0.5)"),
    SegmentOption("max_slices", "--max-slices", "nonneg_int", None, metavar="N",
                  help="propagate at most N slices from each prompted slice (default: no "
                       "limit)"),
    SegmentOption("area_factor"),
    SegmentOption("min_score"),
    SegmentOption("motion"),
)
#: Keys of ``Context.params`` that ``segment`` passes to ``segment_volume``.
SEGMENT_KEYS = tuple(o.name for o in SEGMENT_OPTIONS)

#: ``segment``'s choice of propagation and SAM 2's own options (read by
#: :mod:`napari_sam.batch.sam2_runner`, not passed to ``segment_volume``).
SAM2_OPTIONS = (
    SegmentOption("method", "--method", "choice", None, choices=("sam1", "sam2"),
                  help="sam1: re-prompt each slice from the last mask, with the stop rules "
                       "above (SAM 1 models); sam2: carry objects through the stack with SAM "
                       "2.1's memory (SAM 2.1 models) (default: the model's own)"),
    SegmentOption("stop_after_absent", "--stop-after-absent", "nonneg_int", 2, metavar="N",
                  help="sam2: end an object's run after N slices in a row on which SAM 2 "
                       "finds it absent (0: track it to the ends of the stack; default: 2)"),
)
#: ``segment`` parameters only SAM 2 propagation reads (not passed to segment_volume): its
#: options other than the choice of method.
SAM2_KEYS = tuple(o.name for o in SAM2_OPTIONS if o.name != "method")
