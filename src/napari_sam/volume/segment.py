"""The public entry point of volume propagation: :func:`segment_volume`.

Owns the arguments: checking them, resolving the "auto" defaults per kind of axis
(:data:`MODES`, :data:`AXIS_KINDS`), finding the decoder, and running the propagation's steps
in order (:class:`napari_sam.volume.propagator.Propagator`) into a
:class:`napari_sam.volume.result.VolumeResult`.
"""

from __future__ import annotations

from collections.abc import Mapping

from napari_sam.progress import ProgressArg, reports_progress
from napari_sam.volume.annotations import normalize_prompts
from napari_sam.volume.chains import Chain
from napari_sam.volume.propagator import Propagator
from napari_sam.volume.result import VolumeResult, build_result
from napari_sam.volume.stop_rules import AUTO_FADE, AUTO_REBOUND, REBOUND_NOISE
from napari_sam.volume.sweeps import run_sweeps
from napari_sam.volume.tiled import is_tiled, segment_tiled

__all__ = ["AXIS_KINDS", "MODES", "segment_volume"]

MODES = ("auto", "box", "box+mask", "points", "center")
AXIS_KINDS = ("z", "t")
# default propagation mode per kind of axis (see segment_volume)
_AUTO_MODE = {"z": "box+mask", "t": "box+mask"}


@reports_progress("segment volume")
def segment_volume(
    emb,
    prompts: Mapping,
    *,
    axis_kind: str = "z",
    mode: str = "auto",
    iou_threshold: float = 0.5,
    area_factor: float = 2.5,
    min_area: int = 5,
    min_score: float = 0.0,
    fade_fraction: float | str | None = "auto",
    claimed_fraction: float | None = 0.5,
    rebound_fraction: float | str | None = "auto",
    rebound_noise: float | None = REBOUND_NOISE,
    max_slices: int | None = None,
    exclusive: bool = True,
    motion: bool | None = None,
    boundary: str = "threshold",
    predictor=None,
    progress: ProgressArg = None,
    warn_lost: bool = True,
) -> VolumeResult:
    """Segment objects through a stack from prompts on one or more slices.

    Each object is segmented on its annotated slices (a single click decodes three candidate
    masks and keeps the best scoring), then propagated up and down: the next slice is
    prompted from the previous slice's mask. Between two annotated slices of the same object
    the gap is filled from both ends, meeting in the middle. On each slice, all live objects
    are decoded in one batched decoder call. On a CPU with two or more cores the up and the
    down sweep run at once, in two threads, where no chains meet between annotated slices
    (:mod:`napari_sam.volume.sweeps`; the results are the same). Where masks overlap in the
    labels, a drawn mask wins, then a mask decoded from the user's prompts on that slice, then
    propagated masks,
    the one propagated over fewer slices first; among masks of one rank the highest logit
    wins.

    Parameters
    ----------
    emb : StackEmbeddings or TiledStackEmbeddings
        Embeddings of a (Z, Y, X) stack along the propagation axis (:func:`napari_sam.embed`);
        anything with ``.shape`` (Z, Y, X), ``[z] -> ImageEmbedding`` and ``.predictor``.
        Tiled embeddings propagate each object in the window whose core holds its first
        prompt and paste the results back (:mod:`napari_sam.volume.tiled`); the result is in
        the whole stack's frame either way.
    prompts : mapping
        ``{object_id: [SlicePrompt | dict, ...]}`` (one prompt or a list); ids are positive
        integers and become the label values. See :class:`SlicePrompt` and
        :func:`prompts_from_labels`. A slice with only negative points of an object is no
        annotated slice: the points are added to the prompt propagated onto that slice.
    axis_kind : {"z", "t"}
        What the stack axis is; picks defaults for ``mode`` and ``motion``.
    mode : {"auto", "box", "box+mask", "points", "center"}
        How the next slice is prompted from the previous mask: its box; its box plus its
        low-resolution logits as a mask prompt; distance-transform maxima as positives with
        negatives just outside the mask; a single centre point (best of three candidates).
        ``"auto"`` is "box+mask" for both "z" and "t" (the best mode on synthetic nuclei,
        tuning seeds; see "Volume propagation" in docs/benchmarks.md).
    iou_threshold : float
        Stop when a new mask's IoU with the previous slice's mask is below this.
    area_factor : float
        Stop when the area grows or shrinks by more than this factor from one slice to the next.
    min_area : int
        Stop when the new mask has fewer pixels ("vanished").
    min_score : float
        Stop when the predicted IoU is below this (0 disables).
    fade_fraction : float, "auto" or None
        Stop where the object fades: when its contrast (:func:`mask_contrast`: mean inside
        the mask minus the mean of a 3-pixel ring around it) falls below this fraction of its
        strongest contrast on its annotated slices, in the same sign (bright or dark objects
        alike); a slice as contrasted as the annotated slice propagation started from never
        counts as faded (so an object annotated on a dim end slice keeps its like neighbours). Objects fainter than 2 % of the stack's intensity range there are
        not tested. Needs the images (``emb.stack``, as :func:`napari_sam.embed` keeps);
        None disables. "auto": 0.5 for "z" (propagated masks otherwise run on past the ends
        of blurred objects), None for "t" (objects that bleach over time would stop).
    rebound_fraction : float, "auto" or None
        Stop where the object's contrast (as for ``fade_fraction``), having fallen from its
        highest value along the chain by more than this fraction of the reference contrast,
        rises again by more than the same amount on two slices in a row: the mask has run
        from the end of its object into another one above or below it (a nucleus's contrast
        rises to its middle and falls to its ends once). The run is cut back to its dimmest
        slice. Catches what the claimed rule cannot: objects nobody annotated. Needs the
        images, as the fade rule does; None disables. "auto": 0.05 for "z", None for "t"
        (chosen on validation volumes: docs/benchmarks.md, "Stopping rules").
    rebound_noise : float or None
        The dip and the rise of the rebound rule must also each exceed this many standard
        errors of the difference between the two contrasts compared, each contrast's error
        measured from the spread of the pixels inside the mask and in its ring
        (sqrt(var_in / n_in + var_ring / n_ring)): on a noisy object a wobble of its contrast
        along z is not taken for another object. None: the fraction alone.
    claimed_fraction : float or None
        After propagation, cut an object's run at the first slice where more than this
        fraction of its mask lies on another object's mask that is fewer slices away from
        its own annotated slice (the nearer evidence keeps the place); None disables.
    max_slices : int, optional
        Propagate at most this many slices from each annotated slice.
    exclusive : bool
        Objects decoded together on a slice do not share pixels when their next prompts are
        derived: a contested pixel stays with the object propagated over fewer slices, then
        with the highest logit there (the rule used for the final labels), so one object's
        leak does not widen its next prompt into a neighbour.
    motion : bool, optional
        Shift the prompts (and the previous mask used for the IoU rule) by the object's
        centroid motion between the last two slices; default True for "t", False for "z".
    boundary : {"threshold", "auto", "edge"}
        Where the masks decoded from the user's prompts on the annotated slices are cut:
        ``"threshold"`` (the default) at the model's threshold; ``"edge"`` where their
        boundary lies on the strongest image edges (:mod:`napari_sam.edge_threshold`, as the
        dock's preview and ``Predictor.predict`` cut the demo model's masks); ``"auto"``: the
        model's ``mask_boundary``. Not the default: seeds cut on edges raised the worst leak
        of #3's synthetic volumes (demo run 36: one click 0.098 -> 0.129; run 37: two
        annotated slices 0.104 -> 0.137; docs/models.md). Needs the images
        (``emb.stack``); the propagated slices are cut at the threshold, and so is a tiled
        stack with ``"auto"`` (``"edge"`` raises there).
    predictor : Predictor, optional
        Decoder to use; default ``emb.predictor``.
    progress : None, bool or callable(done, total)
        None or False: silent; True: a ``tqdm.auto`` progress bar; a callable: called as
        ``(done, total)`` while the objects are carried through the stack: ``total`` is Z
        per object (one object: the stack's slices), ``done`` the slices each object was
        carried through or can no longer reach (a stopped run's far side), summed over the
        objects. It only grows, by at least one for every slice carried (a callback that
        cancels by raising gets its chance on every slice), each value once, and ends at
        (total, total) (tiled: each window or view used moves it over its objects' share,
        after a (0, total) per object while the objects' frames are chosen).
    warn_lost : bool
        Warn (:class:`~napari_sam.volume.result.LostObjectsWarning`) about objects that are
        not in the labels; False: only ``result.lost`` says which and why (a caller that
        reports them itself, as the dock's status line does; no warning filter is touched,
        which is not thread-safe).

    Returns
    -------
    VolumeResult
        ``labels`` (Z, Y, X), per-slice ``scores``, ``stop_reasons`` {"up", "down"} per object,
        ``slice_range`` per object; ``np.asarray(result)`` is the label array.

    Raises
    ------
    ValueError
        Prompts outside the slices, slice indices out of range, an object without prompts,
        masks whose shape differs from the embedded stack, unknown modes, an unknown
        ``boundary``, ``boundary="edge"`` on a tiled stack.
    TypeError
        A ``progress`` that is not None, a bool or a callable (before any work).

    Examples
    --------
    >>> emb = ns.embed(volume, ns.load_model("demo"))
    >>> res = ns.segment_volume(emb, {1: [SlicePrompt(20, points=[[64, 80]])],
    ...                               2: [{"slice": 31, "box": [10, 10, 40, 50]},
    ...                                   {"slice": 40, "stop": True}]})
    >>> res.labels.shape, res.stop_reasons[2]
    ((64, 256, 256), {'up': 'stop_marker', 'down': 'iou'})
    """
    mode, motion, fade_fraction, rebound_fraction = _resolve_auto(
        axis_kind, mode, motion, fade_fraction, rebound_fraction)
    _check_embeddings(emb, predictor)
    shape = _stack_shape(emb)
    _check_rules(iou_threshold, area_factor, fade_fraction, claimed_fraction, rebound_fraction,
                 max_slices)
    objects = normalize_prompts(prompts, shape)
    pred = _predictor_of(emb, predictor)
    seed_edges = _seed_edges(boundary, pred, is_tiled(emb))

    def run(stack_emb, objs, report):
        prop = Propagator(stack_emb, objs, predictor=pred, mode=mode, motion=bool(motion),
                          min_area=min_area, iou_threshold=iou_threshold,
                          area_factor=area_factor, min_score=min_score, max_slices=max_slices,
                          exclusive=exclusive, progress=report, fade_fraction=fade_fraction,
                          claimed_fraction=claimed_fraction, rebound_fraction=rebound_fraction,
                          rebound_noise=rebound_noise, seed_edges=seed_edges)
        return (prop, *_propagate(prop))

    if is_tiled(emb):  # each object in the window that holds it, pasted back
        return segment_tiled(emb, objects, run, progress, pred, warn_lost=warn_lost)
    prop, up, down = run(emb, objects, progress)
    return build_result(prop.compose(), prop.records, objects, up, down, prop.decoder_calls,
                        prop.calls_per_slice, warn=warn_lost)


def _resolve_auto(axis_kind: str, mode: str, motion, fade_fraction, rebound_fraction):
    """(mode, motion, fade_fraction, rebound_fraction) with "auto" and None defaults replaced
    by the axis kind's."""
    if axis_kind not in AXIS_KINDS:
        raise ValueError(f"axis_kind must be one of {AXIS_KINDS}, got {axis_kind!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        mode = _AUTO_MODE[axis_kind]
    if motion is None:
        motion = axis_kind == "t"
    if isinstance(fade_fraction, str):
        if fade_fraction != "auto":
            raise ValueError(f"fade_fraction must be a number in [0, 1], 'auto' or None, got "
                             f"{fade_fraction!r}")
        fade_fraction = AUTO_FADE[axis_kind]
    if isinstance(rebound_fraction, str):
        if rebound_fraction != "auto":
            raise ValueError(f"rebound_fraction must be a number in [0, 1], 'auto' or None, "
                             f"got {rebound_fraction!r}")
        rebound_fraction = AUTO_REBOUND[axis_kind]
    return mode, motion, fade_fraction, rebound_fraction


def _stack_shape(emb) -> tuple[int, int, int]:
    """(Z, Y, X) of the embedded stack."""
    shape = tuple(int(s) for s in getattr(emb, "shape", ()))
    if len(shape) != 3:
        raise ValueError(
            f"emb must be the embeddings of a (Z, Y, X) stack (from napari_sam.embed), got "
            f"shape {getattr(emb, 'shape', None)}"
        )
    return shape


def _check_rules(iou_threshold, area_factor, fade_fraction, claimed_fraction, rebound_fraction,
                 max_slices) -> None:
    """ValueError for stop rule settings out of their range."""
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if area_factor < 1:
        raise ValueError(f"area_factor must be >= 1, got {area_factor}")
    for name, value in (("fade_fraction", fade_fraction), ("claimed_fraction", claimed_fraction),
                        ("rebound_fraction", rebound_fraction)):
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1] or None (to disable the rule), got {value}")
    if max_slices is not None and max_slices < 0:
        raise ValueError(f"max_slices must be >= 0, got {max_slices}")


def _predictor_of(emb, predictor):
    """The decoder to use: ``predictor``, else the embeddings' own."""
    pred = predictor if predictor is not None else getattr(emb, "predictor", None)
    if pred is None or not hasattr(emb, "__getitem__"):
        raise TypeError(
            f"segment_volume needs the stack's embeddings (napari_sam.embed(stack, model)), got "
            f"a {type(emb).__name__} without per-slice embeddings or a predictor"
        )
    return pred


def _propagate(prop: Propagator) -> tuple[list[Chain], list[Chain]]:
    """Annotated slices, the up and down sweeps (at once where they are independent:
    :func:`run_sweeps`), then the claimed rule; returns the (up, down) chains."""
    prop.annotate()
    up, down = prop.make_chains()
    run_sweeps(prop, up, down)
    prop.resolve_claims()
    return up, down


def _check_embeddings(emb, predictor) -> None:
    """TypeError for what is not a stack's embeddings (a raw stack, a 2D embedding, None)."""
    from napari_sam.predictor import ImageEmbedding

    if isinstance(emb, ImageEmbedding):
        raise TypeError(
            "segment_volume needs the embeddings of a stack, got the ImageEmbedding of one 2D "
            "image; use Predictor.predict for a single image, or "
            "emb = napari_sam.embed(stack, model) for a stack"
        )
    raw = hasattr(emb, "dtype") and not hasattr(emb, "predictor")  # numpy, zarr, dask
    if raw or emb is None or isinstance(emb, (list, tuple, str)):
        what = (
            f"an array of shape {tuple(emb.shape)}" if hasattr(emb, "shape")
            else f"{type(emb).__name__}"
        )
        raise TypeError(
            f"segment_volume needs the stack's embeddings, got {what}; embed the stack first: "
            "emb = napari_sam.embed(stack, model), then segment_volume(emb, prompts)"
        )


def _seed_edges(boundary: str, predictor, tiled: bool) -> bool:
    """Whether the annotated slices' masks are cut on the image's edges (``boundary``); on
    tiled embeddings never (as tiled clicks: the dock's preview cuts them at the threshold)."""
    from napari_sam.edge_threshold import resolve_boundary

    wanted = resolve_boundary(boundary, getattr(predictor, "model", None))
    if tiled and boundary == "edge":
        raise ValueError("boundary='edge' cuts masks of untiled stacks only: embed the stack "
                         "with tiling=None, or use boundary='threshold'")
    return wanted == "edge" and not tiled
