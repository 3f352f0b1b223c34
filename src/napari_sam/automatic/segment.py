"""The entry point of segment everything, :func:`segment_everything`: argument checks, then
the 2D pipeline for an image or its embedding, the stack pipeline for a stack or its
embeddings."""

from __future__ import annotations

import numpy as np

from napari_sam.automatic.foreground import auto_foreground, is_constant
from napari_sam.automatic.image2d import segment_image
from napari_sam.automatic.params import check_int, make_params, recommended_thresholds
from napari_sam.automatic.results import AutomaticResult, empty_result
from napari_sam.automatic.stack import segment_stack
from napari_sam.preprocess import reject_napari_layer
from napari_sam.progress import ProgressArg, reports_progress


@reports_progress("segment everything")
def segment_everything(
    image_or_embeddings,
    model=None,
    *,
    points_per_side: int | str | None = "auto",
    points_per_batch: int | None = None,
    pred_iou_thresh: float | None = None,
    stability_score_thresh: float | None = None,
    stability_score_offset: float = 1.0,
    box_nms_thresh: float | None = None,
    crop_n_layers: int = 0,
    crop_nms_thresh: float = 0.7,
    crop_overlap_ratio: float = 512 / 1500,
    crop_n_points_downscale_factor: int = 1,
    min_mask_region_area: int = 0,
    min_visible_fraction: float = 0.5,
    fill_gaps: bool = True,
    rescue_margin: float = 0.1,
    point_grids=None,
    foreground=None,
    contrast_limits: tuple[float, float] | None = None,
    image=None,
    link_iou: float = 0.25,
    max_gap: int = 1,
    min_z_extent: int = 1,
    propagate: bool = True,
    axis_kind: str = "z",
    device="auto",
    precision: str = "auto",
    fast_decoder: bool = True,
    keep_masks: bool = True,
    progress: ProgressArg = None,
    tiling="auto",
    trace: bool = False,
) -> AutomaticResult:
    """Automatic instance segmentation of a 2D image or a stack ("segment everything").

    Parameters
    ----------
    image_or_embeddings : array-like, ImageEmbedding, TiledEmbedding or StackEmbeddings
        A 2D image (Y, X) or (Y, X, 3|4) of any dtype (its embedding is computed); an
        :class:`~napari_sam.ImageEmbedding` of a 2D image; a
        :class:`~napari_sam.tiling.TiledEmbedding` of a 2D image (segmented window by window;
        pass ``image=`` for ``foreground="auto"``, crop layers and the gap pass's blobs); a
        stack (Z, Y, X) or (Z, Y, X, 3|4); or :class:`~napari_sam.StackEmbeddings` (reused,
        nothing recomputed). A 3-dimensional array whose last axis has 3 or 4 entries is an
        RGB(A) image.
    model : Sam or str, optional
        The model (or a name for :func:`napari_sam.load_model`); optional for
        StackEmbeddings, which carry theirs.
    points_per_side : int or None
        Grid of ``points_per_side**2`` single-point prompts (crop layer i uses
        ``points_per_side / crop_n_points_downscale_factor**i``). Exclusive with ``point_grids``.
    points_per_batch : int or None
        Prompts decoded together (memory vs speed; the result does not depend on it).
        None: 64 (Meta's default) on the CPU, 256 on a GPU, where larger batches mean fewer
        kernel launches (0.31 s -> 0.21 s for a ViT-B 32 x 32 grid on an H100).
    pred_iou_thresh : float in [0, 1] or None
        Keep masks whose predicted IoU is greater (0 disables the filter). None: the model's
        recommendation (``model.automatic_defaults``, from its sidecar; the bundled demo
        model has one), else SAM's 0.88.
    stability_score_thresh : float in [0, 1] or None
        Keep masks whose stability score is at least this (0 disables the filter). None: the
        model's recommendation, else SAM's 0.95.
    stability_score_offset : float
        Logit offset of the stability score.
    box_nms_thresh : float in [0, 1] or None
        Box-IoU threshold of the NMS between masks of one crop. None: the model's
        recommendation, else SAM's 0.7.
    crop_n_layers : int
        Also segment (2**i)**2 zoomed crops for i = 1..crop_n_layers (needs the image).
    crop_nms_thresh : float in [0, 1]
        Box-IoU threshold of the NMS between crops (smaller crops win).
    crop_overlap_ratio : float
        Overlap of neighbouring crops as a fraction of the image's short side (layer 1).
    crop_n_points_downscale_factor : int
        Grid reduction per crop layer.
    min_mask_region_area : int
        Fill holes and remove islands smaller than this (pixels) in each kept mask, then
        re-run NMS preferring untouched masks, as Meta does (0: off).
    min_visible_fraction : float
        In the label image, drop a mask (it goes to ``hidden``) when smaller masks painted over
        it leave less than this fraction of its area visible; its pixels go to the masks
        underneath. Without it (0, Meta's behaviour) the visible remains of a mask that mostly
        duplicates others (a mask over two touching nuclei, under the two nuclei's own masks)
        become fragment objects. Default 0.5: F1@0.5 of the demo model on validation nuclei
        0.633 -> 0.756 (2D), 0.437 -> 0.474 (3D); see "Label image quality with the demo
        model" in docs/benchmarks.md.
    rescue_margin : float
        2D images only: masks that miss ``pred_iou_thresh`` or ``stability_score_thresh`` by
        at most this much are kept where they lie on pixels no other mask covers (at most
        20 % of a rescued mask may lie on other objects; they go after the others, with new
        ids). On real microscopy the demo model's predicted IoUs and stabilities fall below
        what it learned on synthetic scenes, and whole nuclei went missing. Default 0.1:
        F1@0.5 on the real development stack's slices 0.41 -> 0.61, validation nuclei 0.962
        -> 0.974 (docs/benchmarks.md, "Rescued masks"). 0 turns it off. Stacks of several
        slices ignore it: the rescued fragments became false 3D objects (validation 3D F1
        0.761 -> 0.712).
    point_grids : list of (n, 2) arrays, optional
        Explicit grids of (row, col) in [0, 1], one per crop layer.
    foreground : None, "auto", or boolean array (Y, X) / (Z, Y, X)
        Grid points on False pixels are not prompted (faster on sparse images). ``"auto"``:
        pixels above the Otsu threshold of the log of the smoothed image (bright objects, dim
        ones included, on a dark background, e.g. fluorescence), dilated by 1 % of the image size.
    contrast_limits : (float, float), optional
        Intensity mapping for images (default: percentiles, volume-wide for stacks).
    image : array-like (Y, X) or (Y, X, 3|4), optional
        With an :class:`~napari_sam.ImageEmbedding`: the image it was made from (mapped with
        ``contrast_limits`` as the embedding was), so that ``fill_gaps`` can also prompt the
        blobs no mask covers. Without it only the middles of uncovered regions are prompted.
    link_iou, max_gap : float, int
        Stacks only: how the 2D masks of neighbouring slices are linked into objects (see
        :func:`link_slices`).
    min_z_extent : int
        Stacks only: drop objects spanning fewer slices (after propagation when
        ``propagate``).
    propagate : bool
        Stacks only: segment every linked object again by propagating its largest 2D mask up
        and down the stack with :func:`napari_sam.segment_volume` (all objects decoded together,
        its stopping rules, overlaps to the object propagated over fewer slices). Per-slice
        detection misses objects on some slices, so linked objects come out too short or
        split; propagation gives each object its full extent. Demo model, validation nuclei
        volumes: F1@0.5 0.536 -> 0.696 (see "Label image quality with the demo model" in
        docs/benchmarks.md). False: the linked 2D masks as they are.
    axis_kind : {"z", "t"}
        Stacks only: what the stack axis is, for propagation's defaults (see
        :func:`napari_sam.segment_volume`).
    device : str or torch.device
        See :class:`napari_sam.Predictor` (ignored for StackEmbeddings).
    precision : {"auto", "fp32", "bf16", "fp16"}
        See :class:`napari_sam.Predictor` ("auto": bf16 on CUDA and on CPUs with native
        bfloat16, fp32 elsewhere; ignored for StackEmbeddings). On a GPU anything but "fp32"
        also runs :class:`GridDecoder` at :data:`GRID_PRECISION_CUDA` (TF32 matrix products);
        on a CPU where the predictor runs bfloat16 GridDecoder runs its products in bfloat16
        too; "fp32" keeps it exact.
    fast_decoder : bool
        Use :class:`GridDecoder` (same masks, much faster); False decodes with the model's
        own decoder.
    keep_masks : bool
        Store each mask (cropped to its bbox) in its record.
    progress : None, bool or callable(done, total)
        None or False: silent. True: a ``tqdm.auto`` progress bar. A callable: stacks: called
        after each slice (each window of each slice when tiled), then during propagation
        (which counts as much as the slices), with ``done`` strictly increasing to ``total``.
        Tiled 2D images: called after each window.
        Raising from it stops the run (how the GUI cancels). Anything else: TypeError before
        any work.
    tiling : "auto", None, False, True, int, (int, int) or Tiling
        Segment a 2D image (or each slice of a stack) larger than the model input at full
        resolution in overlapping windows of the model input's size (see
        :func:`napari_sam.tiling.choose_tiling`): ``"auto"`` tiles when the longer side
        exceeds 1.5 model inputs (384 px for the demo model, 1536 px for SAM); None or False
        never (the image is shrunk to the model input). Each window is segmented as its own
        image (``points_per_side`` and ``foreground="auto"`` apply per window), each mask is
        kept by the window whose core holds its centre, duplicates across window borders are
        removed, and one label image is painted (:mod:`napari_sam.automatic.tiled`).
        Ignored for an ImageEmbedding or StackEmbeddings (already embedded untiled). A tiled
        stack with ``propagate=True`` needs tiled stack embeddings (``napari_sam.tiled_stack``).
    trace : bool
        Stacks with ``propagate`` only: also return the propagation trace that ``napari-sam
        auto`` records in its output's sidecar, as ``result.trace`` (per object, slice by
        slice, its predicted IoU, area and contrast, where and why it stopped, and slices
        worth a look; :func:`napari_sam.trace.automatic_trace`).
        ``napari_sam.trace.render_pages(result.trace["trace"], "trace.png")`` draws it as
        ``napari-sam report`` does. ValueError for a 2D image or ``propagate=False``, which
        have no propagation (``result.stats`` counts the candidate masks each filter dropped).

    Returns
    -------
    AutomaticResult
        ``labels`` without overlaps (every pixel gets the smallest mask covering it) and
        ``records``: :class:`MaskRecord` for images, :class:`ObjectRecord` for stacks;
        ``trace`` with ``trace=True``.

    Raises
    ------
    ValueError
        For invalid parameters (e.g. ``points_per_side=0``, thresholds outside [0, 1]) or
        inputs. An empty (all-equal) image gives zero objects, not an error.
    TypeError
        For a ``progress`` that is not None, a bool or a callable.
    """
    from napari_sam.embeddings import StackEmbeddings
    from napari_sam.predictor import ImageEmbedding
    from napari_sam.tiling import TiledEmbedding

    if isinstance(model, str):
        from napari_sam.models.registry import load_model

        model = load_model(model)
    _refuse_sam2(model)
    x = image_or_embeddings
    owner = x.model if isinstance(x, StackEmbeddings) or _is_tiled_stack(x) else model
    rec = recommended_thresholds(owner)
    params = make_params(
        points_per_side, points_per_batch,
        rec["pred_iou_thresh"] if pred_iou_thresh is None else pred_iou_thresh,
        rec["stability_score_thresh"] if stability_score_thresh is None
        else stability_score_thresh,
        stability_score_offset,
        rec["box_nms_thresh"] if box_nms_thresh is None else box_nms_thresh,
        crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor,
        min_mask_region_area, point_grids, fast_decoder, min_visible_fraction, fill_gaps,
        rescue_margin,
    )  # fmt: skip
    stack_args = _stack_args(link_iou, max_gap, min_z_extent, keep_masks, progress, propagate,
                             axis_kind, trace)
    _check_choices(foreground, tiling)

    if isinstance(x, StackEmbeddings) or _is_tiled_stack(x):
        _check_same_model(x, model)
        return segment_stack(x, params, foreground, *stack_args, images=image)
    if model is None:
        raise ValueError("a model is needed: segment_everything(image, model)")
    if isinstance(x, (ImageEmbedding, TiledEmbedding)):
        _check_trace_2d(trace)
    if isinstance(x, ImageEmbedding):
        return _segment_embedding(x, model, params, foreground, image, contrast_limits, device,
                                  precision, keep_masks)
    if isinstance(x, TiledEmbedding):
        return _segment_tiled_embedding(x, model, params, foreground, image, contrast_limits,
                                        device, precision, keep_masks, progress)
    return _segment_array(x, model, params, foreground, contrast_limits, device, precision,
                          keep_masks, stack_args, tiling)


def _check_same_model(emb, model) -> None:
    """ValueError naming both model ids when ``model`` (None: the embeddings' own) is not the
    model the stack embeddings ``emb`` were made with."""
    from napari_sam.predictor import model_mismatch

    if model is None or model is emb.model:
        return
    made_by, uses = emb.model.model_id, getattr(model, "model_id", None)
    if uses != made_by:
        raise ValueError(model_mismatch(
            made_by, uses, what="the stack embeddings were", user="the model given is",
            fix="recompute them with this model (napari_sam.embed(stack, model)), or leave "
                "the model out to use theirs"))


def _check_choices(foreground, tiling) -> None:
    """ValueError for a ``foreground`` or ``tiling`` string other than "auto"."""
    if isinstance(foreground, str) and foreground != "auto":
        raise ValueError(f"foreground must be None, 'auto' or a boolean array, got {foreground!r}")
    if isinstance(tiling, str) and tiling != "auto":
        raise ValueError(f"tiling must be 'auto', None, True, a halo or (window, halo); got "
                         f"{tiling!r}")


def _refuse_sam2(model) -> None:
    """ValueError for a SAM 2 model: segment everything decodes a grid of points with a SAM 1
    decoder, and SAM 2.1 propagates prompts instead."""
    if getattr(model, "family", None) == "sam2":
        from napari_sam.models.registry import describe_family

        raise ValueError(
            f"segment_everything needs a SAM 1 model (e.g. 'demo', 'vit_b_lm', 'vit_b'), but "
            f"this is {describe_family(model)}; SAM 2.1 models propagate prompts through a "
            "stack: napari_sam.sam2_volume.segment_volume_sam2(stack, prompts, model)")


def _stack_args(link_iou, max_gap, min_z_extent, keep_masks, progress, propagate,
                axis_kind, trace) -> tuple:
    """The checked stack arguments, in :func:`segment_stack`'s order after ``foreground``."""
    if not 0 <= float(link_iou) <= 1:
        raise ValueError(f"link_iou must be in [0, 1], got {link_iou}")
    max_gap = check_int("max_gap", max_gap, 0)
    min_z_extent = check_int("min_z_extent", min_z_extent, 1)
    if axis_kind not in ("z", "t"):
        raise ValueError(f"axis_kind must be 'z' or 't', got {axis_kind!r}")
    if not isinstance(trace, (bool, np.bool_)):
        raise ValueError(f"trace must be True or False, got {trace!r}")
    if trace and not propagate:
        raise ValueError("trace=True returns the propagation trace, and propagate=False "
                         "propagates nothing: drop one of them (result.stats counts the "
                         "candidate masks each filter dropped)")
    return (link_iou, max_gap, min_z_extent, keep_masks, progress, bool(propagate), axis_kind,
            bool(trace))


def _check_trace_2d(trace) -> None:
    """ValueError for ``trace=True`` with a 2D image, which is not propagated."""
    if trace:
        raise ValueError("trace=True returns the propagation trace of a stack, and a 2D image "
                         "is not propagated: leave trace out (result.stats counts the "
                         "candidate masks each filter dropped)")


def _is_tiled_stack(x) -> bool:
    """Whether ``x`` is tiled stack embeddings (``napari_sam.tiled_stack``): a tiling and
    per-window sub-stacks."""
    return hasattr(x, "tiling") and hasattr(x, "window_stack")


def _segment_array(x, model, params, foreground, contrast_limits, device, precision,
                   keep_masks, stack_args, tiling) -> AutomaticResult:
    """Segment everything on an array: a 2D image (Y, X) or (Y, X, 1|3|4), or a stack
    (Z, Y, X) or (Z, Y, X, 3|4), embedded here (window by window when tiled)."""
    from napari_sam.tiling import choose_tiling

    reject_napari_layer(x)  # a layer has .data, not the array's shape
    arr = x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)
    shape = tuple(arr.shape)
    is_rgb = len(shape) == 3 and shape[-1] in (3, 4)
    if len(shape) == 2 or is_rgb or (len(shape) == 3 and shape[-1] == 1):
        _check_trace_2d(stack_args[7])
        return _segment_image_array(arr, model, params, foreground, contrast_limits, device,
                                    precision, keep_masks, tiling, stack_args[4])
    if len(shape) in (3, 4):
        if 0 in shape:
            raise ValueError(f"the stack is empty (shape {shape})")
        chosen = choose_tiling(shape[1:3], int(model.img_size), tiling)
        if chosen is not None:
            return _segment_tiled_stack(arr, model, params, foreground, contrast_limits,
                                        device, precision, stack_args, chosen)
        from napari_sam.embeddings import embed

        emb = embed(arr, model, contrast_limits=contrast_limits, device=device,
                    precision=precision)
        return segment_stack(emb, params, foreground, *stack_args)
    raise ValueError(
        f"expected an image (Y, X) or (Y, X, 3|4), a stack (Z, Y, X) or (Z, Y, X, 3|4), an "
        f"ImageEmbedding or StackEmbeddings; got shape {shape}"
    )


def _segment_tiled_stack(arr, model, params, foreground, contrast_limits, device, precision,
                         stack_args, tiling) -> AutomaticResult:
    """A stack whose slices are tiled: with ``propagate``, its tiled stack embeddings
    (``napari_sam.embed(..., tiling=)``); without, each slice's windows encoded as the slice
    is segmented."""
    from napari_sam.automatic.tiled import TiledSlices
    from napari_sam.predictor import Predictor

    if stack_args[5]:  # propagate: through the tiled stack embeddings
        from napari_sam.tiled_stack import embed

        emb = embed(arr, model, contrast_limits=contrast_limits, device=device,
                    precision=precision, tiling=tiling)
        return segment_stack(emb, params, foreground, *stack_args, images=arr)
    pred = Predictor(model, device=device, precision=precision)
    src = TiledSlices(arr, pred, tiling, contrast_limits)
    return segment_stack(src, params, foreground, *stack_args)


def _segment_embedding(emb, model, params, foreground, image, contrast_limits, device,
                       precision, keep_masks) -> AutomaticResult:
    """Segment everything on the ImageEmbedding ``emb`` of a 2D image (``image``, optional,
    is the image it was made from: it lets the gap pass prompt blobs)."""
    from napari_sam.predictor import Predictor

    if params.crop_n_layers > 0:
        raise ValueError("crop_n_layers > 0 needs the image, not only its embedding")
    if isinstance(foreground, str):
        raise ValueError("foreground='auto' needs the image; pass a boolean array instead")
    pred = Predictor(model, device=device, precision=precision)
    pred.check_embedding(emb)
    fg = _check_fg(foreground, tuple(emb.original_size))
    rgb_fn = None
    if image is not None:
        from napari_sam.preprocess import to_uint8_rgb, validate_image

        img = validate_image(np.asarray(image))
        if tuple(img.shape[:2]) != tuple(emb.original_size):
            raise ValueError(f"image of shape {img.shape[:2]} is not the one embedded "
                             f"({tuple(emb.original_size)})")
        rgb_fn = lambda: to_uint8_rgb(img, contrast_limits)  # noqa: E731
    return segment_image(pred, emb, rgb_fn, tuple(emb.original_size), params, fg, keep_masks)


def _segment_image_array(arr, model, params, foreground, contrast_limits, device, precision,
                         keep_masks, tiling="auto", progress=None) -> AutomaticResult:
    """Segment everything on a 2D image (Y, X) or (Y, X, 1|3|4): embed it (window by window
    when tiled), then the 2D pipeline (no object on a constant image)."""
    from napari_sam.automatic.tiled import WindowSource, segment_tiled
    from napari_sam.predictor import Predictor
    from napari_sam.preprocess import to_uint8_rgb, validate_image
    from napari_sam.tiling import choose_tiling

    img = validate_image(np.asarray(arr))
    size = tuple(img.shape[:2])
    chosen = choose_tiling(size, int(model.img_size), tiling)
    auto_per_window = chosen is not None and isinstance(foreground, str)
    fg = foreground if auto_per_window else _check_fg(foreground, size, img)
    pred = Predictor(model, device=device, precision=precision)
    if is_constant(img):
        return empty_result(size, params)
    if chosen is not None:
        src = WindowSource(chosen, pred, image=img, contrast_limits=contrast_limits)
        return segment_tiled(pred, src, params, fg, keep_masks, progress)
    rgb = to_uint8_rgb(img, contrast_limits)
    emb = pred.encode_rgb([rgb])[0]
    return segment_image(pred, emb, lambda: rgb, size, params, fg, keep_masks)


def _segment_tiled_embedding(tiled, model, params, foreground, image, contrast_limits,
                             device, precision, keep_masks, progress) -> AutomaticResult:
    """Segment everything on the TiledEmbedding of a 2D image (``image``, optional, is the
    image it was made from)."""
    from napari_sam.automatic.tiled import WindowSource, segment_tiled
    from napari_sam.predictor import Predictor
    from napari_sam.preprocess import validate_image

    if image is None and (params.crop_n_layers > 0 or isinstance(foreground, str)):
        raise ValueError("crop_n_layers > 0 and foreground='auto' need the image: pass image=")
    pred = Predictor(model, device=device, precision=precision)
    for emb in tiled.embeddings:
        pred.check_embedding(emb)
    size = tuple(tiled.original_size)
    img = None
    if image is not None:
        img = validate_image(np.asarray(image))
        if tuple(img.shape[:2]) != size:
            raise ValueError(f"image of shape {img.shape[:2]} is not the one embedded ({size})")
    fg = foreground if isinstance(foreground, str) else _check_fg(foreground, size)
    src = WindowSource(tiled.tiling, pred, image=img, contrast_limits=contrast_limits,
                       tiled=tiled)
    return segment_tiled(pred, src, params, fg, keep_masks, progress)


def _check_fg(foreground, size, image=None):
    """The (Y, X) bool foreground of an image of ``size`` (None: every pixel)."""
    if foreground is None:
        return None
    if isinstance(foreground, str):
        return auto_foreground(image)
    fg = np.asarray(foreground)
    if fg.shape != tuple(size):
        raise ValueError(f"foreground must have the image's shape {tuple(size)}, got {fg.shape}")
    return fg.astype(bool)

