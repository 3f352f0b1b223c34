"""The live preview of the annotation session: the prompted objects and their masks decoded
on the visible slice, candidate cycling, and drawing the preview into a (Z, Y, X) view.

A mixin of :class:`~napari_sam.annotate.annotation_session.AnnotationSession` (whose hooks
``render``, ``_say``, ``compute_embeddings`` and the prompt and label accessors it uses).
Coordinates are napari order: points (z, row, col), labels (Z, Y, X).
"""

from __future__ import annotations

import numpy as np

from napari_sam.annotation import (
    ObjectMask,
    ObjectPreview,
    decode_slice,
    mask_prompt,
    slice_edges,
)
from napari_sam.words import in_frames

from .commit_checks import refine_problem
from .errors import UserError
from .jobs import Phase
from .prompt_groups import (
    POINT_OBJECT,
    anchor_refinements,
    group_prompts,
    inside_image,
    nothing_to_segment,
    outside_note,
    refined_slices,
)
from .status_follow import StatusFollow

__all__ = ["LOW_SCORE", "SlicePreview"]

#: on a tiled image, a click's mask scored below this predicted IoU gets a hint to draw a box
#: (the tiles around a click deep inside an object larger than a tile see no edge: the demo
#: model scored such slivers 0.3-0.5; a box larger than a tile is decoded zoomed out)
LOW_SCORE = 0.5


class SlicePreview(StatusFollow):
    """The prompted objects and the preview of the visible slice (a mixin of
    :class:`~napari_sam.annotate.annotation_session.AnnotationSession`)."""

    # ------------------------------------------------------------------ prompts
    def objects(self):
        """The prompted objects (:func:`~napari_sam.annotate.prompt_groups.group_prompts`)."""
        self._require_image()
        points, labels, boxes, _ = inside_image(*self.prompt_arrays(), self.source.shape)
        label = self.selected_label() if self.refine else 0
        refine = refined_slices(points, self.target_labels(), label or 0)
        objects = group_prompts(points, labels, boxes, refine_slices=refine)
        if refine:  # negatives alone get a positive point on the part of the label they keep
            anchor_refinements(objects, self.target_labels(), label)
        return objects

    # ------------------------------------------------------------------ preview
    def _refine_id(self, z: int | None) -> int:
        """The target label being refined (0: none)."""
        label = self.selected_label() if self.refine else None
        if not label or label <= 0:
            return 0
        if z is not None:
            present = (self.target_labels()[z] == label).any()
            if not present:
                raise UserError(
                    f"Label {label} is not on slice {z}: select a label that is there (picker "
                    "tool of the labels layer) or untick 'Refine selected label'."
                )
        return label

    def _mask_inputs(self, z: int, emb) -> dict:
        label = self._refine_id(z)
        if not label:
            return {}
        self.require_sam1("Refining a selected label on a slice (its mask as the prompt)")
        mask = self.target_labels()[z] == label
        return {POINT_OBJECT: mask_prompt(self.predictor, emb, mask)}

    def update_preview(self) -> list[ObjectPreview]:
        """Decode the prompts on the current slice into the preview (live preview)."""
        src = self._require_image()
        z = self.current_z()
        on_slice = [(o.key, o.slices[z]) for o in self.objects() if z in o.slices]
        if self.volume is not None:
            self.volume = None
        if not on_slice:
            self._preview_token = None  # a decode still running for older prompts is dropped
            self.previews = []
            self.render()
            self._say(self._nothing_text(z))
            return self.previews
        if not self.ready([z]):
            if self.job is None or not self.job.running:
                # a tiled slice's windows as the click needs them (ClickFirst), else the
                # slice, and the next slices too (scrolling on) unless the image is tiled
                if not self.decode_on_demand(z, on_slice):
                    self.compute_embeddings([z], then=self.update_preview,
                                            read_ahead=range(z + 1, min(z + 4, src.n_slices)),
                                            pause=self.click_pause())
            else:  # a preload of tiles makes way for the click
                self._pending = True
                self._say((self.pause_for_click()
                           or "Waiting for the running job; the preview follows.")
                          + self._running_propagation_note())
            return self.previews
        emb = self.emb[z]
        masks, edges = self._mask_inputs(z, emb), self._slice_edges(z)
        self._preview_token = token = object()
        # the windows of a tiled slice here; zoomed-out views (encoded: long) in a job
        previews = decode_slice(self.predictor, emb, z, on_slice, masks, edges=edges,
                                zoom=False)
        lead = self.preview_lead
        self._show_previews(z, previews)
        self.zoom_later(z, emb, on_slice, masks, edges, lead, token)
        return self.previews

    def zoom_later(self, z: int, emb, on_slice, masks, edges, lead: str, token,
                   then=None) -> None:
        """The preview just shown of ``on_slice`` on slice ``z`` (decoded in the windows of
        the tiled ``emb``) has objects that need a zoomed-out view (``zoom_pending``): decode
        them again in a job that encodes it (long), shown if no newer prompt came
        (``token``); ``then()`` runs afterwards (at once when there is nothing to zoom)."""
        if not any(p.zoom_pending for p in self.previews):
            if then is not None:
                then()
            return
        if self.job is not None and self.job.running:
            self._pending = True  # previewed again, zoomed out, when the job ends
            return
        predictor = self.predictor

        def gen():
            yield Phase("encoding a zoomed-out view")
            return decode_slice(predictor, emb, z, on_slice, masks, edges=edges)

        def done(zoomed):
            if token is self._preview_token:  # no newer prompt since
                self.preview_lead = lead
                self._show_previews(z, zoomed)

        self.start_job(gen(), "Decoding in a zoomed-out view (the object reaches beyond the "
                       "tiles around its prompt)", done, then=then)

    def _show_previews(self, z: int, previews: list[ObjectPreview]) -> None:
        """Make ``previews`` (of slice ``z``) the preview: the candidates Shift+M chose, the
        layers and the status line."""
        self.previews = previews
        self._preview_refine = self._refine_id(None)
        for p in self.previews:  # the candidate Shift+M chose for this very prompt
            chosen = self.chosen_candidates.get(self.choice_key(p.key, z, p.prompt,
                                                                p.mask_prompt))
            if chosen is not None and chosen < p.n_candidates:
                p.index = chosen
        self.render()
        lead, self.preview_lead = self.preview_lead, ""
        self._say(f"{lead} {self._preview_text()}" if lead else self._preview_text())
        self.preview_status = self.status  # (said again on its slice: StatusFollow)

    def after_setting(self, dropped: str | None, lead: str, quiet: bool = False) -> None:
        """After a Setup change (``lead`` says which) that dropped the preview (``dropped``,
        from ``_lookup``): preview the kept prompts again with the new setting (live), or
        say what went and how to get it back; else say ``lead`` (nothing when ``quiet``)."""
        if dropped == "volume":
            self._say(f"{lead} The propagated preview was made before this change and was "
                      "dropped; the prompts are kept: press Shift+D to propagate again.")
        elif dropped == "slice" and self.live:
            self.preview_lead = lead
            self.refresh_preview()
        elif dropped == "slice":
            self._say(f"{lead} The preview was made before this change and was dropped; the "
                      "prompts are kept: press Shift+S to preview them again.")
        elif not quiet:
            self._say(f"{lead} {self.next_step()}")

    def _slice_edges(self, z: int):
        """The edge map slice ``z``'s masks are cut with (None: at the model's threshold; on
        tiled embeddings always, as :func:`~napari_sam.annotation.decode_slice` cuts them),
        kept for the last slice of this image, model and ``mask_boundary``."""
        if getattr(self.emb, "tiling", None) is not None:
            return None
        key = (self.source.stack, z, self.predictor, self.mask_boundary)
        held = getattr(self, "_edges_held", None)
        if held is None or any(a is not b for a, b in zip(held[0], key)):
            held = self._edges_held = (
                key, slice_edges(self.predictor, self.source.stack, z, self.mask_boundary))
        return held[1]

    def _nothing_text(self, z: int) -> str:
        """The status line when no object is prompted on slice ``z``: what to add, why the
        negative points on the image there segment nothing, and the prompts beside the image
        (napari's points layer takes clicks there; they are ignored: delete them)."""
        arrays = self.prompt_arrays()
        points = inside_image(*arrays, self.source.shape)[0]
        beside = outside_note(*arrays, self.source.shape).strip()
        what = in_frames(nothing_to_segment(points, z, self.refine, self.selected_label()),
                         self.axis_kind)  # (a time series: frames)
        return f"{beside} {what}" if beside else what

    def _preview_text(self) -> str:
        if not self.previews:
            return in_frames("No object on this slice.", self.axis_kind)
        parts = []
        for p in self.previews:
            name = "point object" if p.key == POINT_OBJECT else f"box {p.key[1] + 1}"
            cand = f", candidate {p.index + 1}/{p.n_candidates}" if p.n_candidates > 1 else ""
            parts.append(f"{name}: score {p.score:.2f}{cand}")
        anchored = [p for p in self.previews if getattr(p.prompt, "anchor", None) is not None]
        if anchored:
            r, c = anchored[0].prompt.anchor
            parts.append(f"negative points alone: a positive point was placed at (row {r:.0f}, "
                         f"col {c:.0f}), the part of the label farthest from them (click a "
                         "positive point yourself to choose the part kept)")
        refine = self._refine_id(None)
        labels = self.target_labels() if refine else None
        problem = "" if labels is None else refine_problem(
            [ObjectMask(p.mask, p.z, refine if p.key == POINT_OBJECT else 0)
             for p in self.previews], labels)
        commits = f"Shift+C will not commit: {problem}." if problem else "Shift+C commits."
        if not any(p.mask.any() for p in self.previews) and not refine:
            commits = ("The preview is empty (the model found no object there): click on "
                       "the object itself, or draw a box around it in 'SAM boxes'; Shift+C "
                       "has nothing to commit.")
        text = "; ".join(parts) + ". " + commits + outside_note(*self.prompt_arrays(),
                                                               self.source.shape)
        low = [p for p in self.previews if p.view is None and p.prompt is not None
               and p.prompt.box is None and p.score < LOW_SCORE]
        if low and getattr(self.emb, "tiling", None) is not None:
            text += (f" The mask scores low ({low[0].score:.2f}): if the object is larger than "
                     "a tile, draw a box over all of it (a box larger than a tile is decoded "
                     "zoomed out).")
        zoomed = [p for p in self.previews if p.view is not None]
        if zoomed:
            h, w = zoomed[0].view.shape
            why = ("the refined label is larger than a tile" if zoomed[0].mask_prompt else
                   "the model scored it higher than the tiles around the prompt: an object "
                   "larger than a tile, or one the tiles cut")
            text += (f" Decoded in a zoomed-out view ({h} x {w} px shrunk to the model "
                     f"input; {why}): its outline is coarser than in a tile.")
        text += (self._constant_note(self.previews[0].z) + self._other_slices_note()
                 + self._running_propagation_note())
        if any(p.cut for p in self.previews):
            text += (" The object reaches beyond the tiles around its prompts, so its mask "
                     "may be cut there: click its missing part too (or draw a box over all of "
                     "it), or untick 'Tile large images' for objects this large.")
        return text

    def _running_propagation_note(self) -> str:
        """" The prompts changed since the running propagation started ..." while one runs
        and the prompts differ from those it propagates: its result will be dropped (a user
        learnt it minutes later, on a large stack). Not said of the prompts it propagates."""
        if not self.prompts_changed_since():
            return ""
        return (" The prompts changed since the running propagation started, so its result "
                "will be dropped when it ends (the prompts stay): to propagate them, press "
                "Cancel, then Shift+D.")

    def _other_slices_note(self) -> str:
        """" Its points on slices 4 and 10 make one object ..." when the point object shown
        has positive points on other slices too: a user who clicked the next nucleus on
        another slice without committing got one label over both (session 34)."""
        z = self.current_z()
        point = next((o for o in self.objects() if o.key == POINT_OBJECT), None)
        if point is None or z not in point.slices:
            return ""
        others = [k for k, d in sorted(point.slices.items()) if k != z and (d.labels == 1).any()]
        if not others:
            return ""
        where = ", ".join(str(k) for k in sorted([*others, z]))
        what = in_frames("slices", self.axis_kind)
        return (f" Its points on {what} {where} make one object (Propagate carries it through "
                "them); for two objects, remove this point, commit the first object, then "
                "click the next.")

    def _constant_note(self, z: int) -> str:
        """" This slice is constant ..." when every pixel of slice ``z`` holds one value (a
        blank frame, the wrong channel): the masks follow the prompts alone. Kept per slice;
        not for tiled (large) images, whose slice is not read whole for a preview."""
        from napari_sam.automatic import constant_value, constant_words

        if getattr(self.emb, "tiling", None) is not None:
            return ""
        key = (id(self.source.stack), z)  # not the data: a removed image is not kept alive
        held = getattr(self, "_constant_held", None)
        if held is None or held[0] != key:
            held = self._constant_held = (key, constant_value(self.source.stack[z]))
        if held[1] is None:
            return ""
        what = "This image" if self.source.n_slices == 1 else "This slice"
        return (f" {what} is constant ({constant_words(held[1])}): the mask follows your "
                "prompts alone, not the image.")

    def next_candidate(self) -> int | None:
        multi = [p for p in self.previews if p.n_candidates > 1]
        if not self.previews:
            self._say("Nothing to choose from: click an object first (a single click gives "
                      "three candidate masks, and Shift+M shows the next).")
            return None
        if not multi:
            self._say("Only one candidate: a single click without a box has three.")
            return None
        target = next((p for p in multi if p.key == POINT_OBJECT), multi[0])
        index = target.cycle()
        # kept even where it is the best scoring again: Propagate starts from the mask shown,
        # whichever candidate another decoder (SAM 2's tracker) would score best
        key = self.choice_key(target.key, target.z, target.prompt, target.mask_prompt)
        self.chosen_candidates[key] = index
        self.render()
        self._say(self._preview_text())
        return index

    def choice_key(self, key, z: int, prompt, mask_prompt: bool) -> tuple:
        """What a Shift+M choice is kept under: the object ``key`` on slice ``z``, its
        :class:`~napari_sam.annotate.prompt_groups.DrawnPrompts` there, whether the refined
        label's mask was its prompt, the model and the image. Any change gives another key,
        so the best scoring candidate is shown (and propagated) again."""
        model = None if self.model_choice is None else self.model_choice.key
        arrays = (np.asarray(prompt.points, np.float64), np.asarray(prompt.labels, np.int64),
                  None if prompt.box is None else np.asarray(prompt.box, np.float64))
        return (key, int(z), bool(mask_prompt), model, self._choice_image(),
                *(None if a is None else (a.shape, a.tobytes()) for a in arrays))

    def _choice_image(self):
        """The image part of :meth:`choice_key`: the image's identity, channel axis and the
        channel segmented (None without an image)."""
        try:
            return self.image_identity()[0], self.channel_axis, self.channel
        except AttributeError:  # the dock without an image layer
            return None

    def forget_choices(self) -> None:
        """Forget the Shift+M choices made on the current image (*Clear*, a commit); those of
        other images, whose prompts wait on the shelf, stay."""
        image = self._choice_image()
        self.chosen_candidates = {k: v for k, v in self.chosen_candidates.items()
                                  if k[4] != image}

    def draw_preview(self, view: np.ndarray) -> None:
        """Draw the preview into ``view`` (Z, Y, X): the propagated labels, or object ``i``
        of :attr:`previews` as value ``i + 1`` on its slice; what the last call drew (and
        nothing else) is cleared first."""
        if self._rendered is None:
            view[...] = 0
        else:
            for z in self._rendered:
                view[z] = 0
        self._rendered = set()
        if self.volume is not None:
            labels = np.asarray(self.volume.labels)
            np.copyto(view, labels.astype(view.dtype, copy=False))
            self._rendered = None
        else:
            for i, p in enumerate(self.previews, start=1):
                view[p.z][p.mask] = i
                self._rendered.add(p.z)

    def preview_labels(self) -> np.ndarray:
        """The preview as a new (Z, Y, X) uint16 array (0: background)."""
        view = np.zeros(self._require_image().shape, np.uint16)
        rendered, self._rendered = self._rendered, set()
        self.draw_preview(view)
        self._rendered = rendered
        return view
