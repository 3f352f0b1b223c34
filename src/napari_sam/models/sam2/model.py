"""The SAM 2.1 model: image encoder, prompt heads, object pointers and memory, and the
per-slice tracking step that propagation repeats.

A slice is first encoded once (:meth:`Sam2Model.encode_image`). To segment an object on a
slice, :meth:`Sam2Model.track_step` conditions the slice's features on the memory bank
(earlier slices' memories and object pointers; nothing on a slice that holds prompts and
starts the object), decodes the prompts (or, on slices without prompts, nothing but the
memory), and encodes the result into a new memory. Shapes for S = 1024 px input: E = 64,
D = 256, D_mem = 64; a batch B holds several objects of one slice.

Options are those of Meta's SAM 2.1 configurations (all four sizes share them); parameter
names are Meta's, so official checkpoints load unchanged (see :mod:`.checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..mask_decoder import MLP, TwoWayTransformer
from .decoder import Sam2MaskDecoder, Sam2PromptEncoder
from .hiera import HieraConfig, HieraImageEncoder
from .memory import MemoryAttention, MemoryEncoder
from .memory_bank import FrameOutput, MemoryBank, condition_on_memory

__all__ = ["ImageFeatures", "Sam2Config", "Sam2Model", "NO_OBJECT_LOGIT"]

NO_OBJECT_LOGIT = -1024.0  # mask logits where the object-score head says "absent"


@dataclass(frozen=True)
class Sam2Config:
    """A SAM 2.1 model's shape.

    Attributes
    ----------
    hiera : HieraConfig
        The image encoder's trunk.
    image_size : int
        S, the square model input (1024).
    num_maskmem : int
        Memories attended to: the prompted slices plus ``num_maskmem - 1`` previous ones.
    max_object_pointers : int
        Object pointers of past slices attended to (at most).
    max_cond_frames : int
        Prompted slices attended to (-1: all; bound it for long stacks with many prompts).
    binarize_prompted_memory : bool
        Encode the memory of a slice with point prompts from its thresholded mask (Meta's
        video predictor does; ``SAM2Base`` alone does not).
    """

    hiera: HieraConfig = field(default_factory=HieraConfig)
    image_size: int = 1024
    num_maskmem: int = 7
    max_object_pointers: int = 16
    max_cond_frames: int = -1
    binarize_prompted_memory: bool = True

    @property
    def embedding_size(self) -> int:
        """E: side of the image embedding (S / 16)."""
        return self.image_size // 16


@dataclass
class ImageFeatures:
    """A slice's encoder output, for B objects (or 1, broadcast).

    Attributes
    ----------
    features : Tensor
        (B, D, E, E) image embedding (before any memory).
    position : Tensor
        (B, D, E, E) its sine position encoding.
    high_res : list of Tensor
        [(B, D/8, 4E, 4E), (B, D/4, 2E, 2E)]: stride-4 and stride-8 features, already
        projected by the decoder's ``conv_s0``/``conv_s1``.
    """

    features: Tensor
    position: Tensor
    high_res: list[Tensor]

    def expand(self, batch: int) -> ImageFeatures:
        """The same features repeated for ``batch`` objects."""
        def rep(x):
            return x.expand(batch, *x.shape[1:])
        return ImageFeatures(rep(self.features), rep(self.position),
                             [rep(x) for x in self.high_res])


class Sam2Model(nn.Module):
    """SAM 2.1 (see the module docstring). Build with a :class:`Sam2Config`.

    Attributes
    ----------
    family : str
        ``"sam2"`` (SAM 1 models say ``"sam1"``): callers branch on it.
    model_id : str
        Identifies the weights (``"<name>:<sha256[:12]>"`` when loaded by
        :func:`napari_sam.load_model`); caches of image features key on it.
    variant : str
        The official size (``"sam2.1_hiera_tiny"``, ...) or ``"custom"``.
    mask_threshold : float
        Logit threshold of a mask (0).
    """

    family = "sam2"
    mask_threshold: float = 0.0

    def __init__(self, config: Sam2Config):
        super().__init__()
        self.config = config
        self.model_id = "sam2:unsaved"
        self.variant = "custom"
        d, d_mem, e, s = 256, 64, config.embedding_size, config.image_size
        self.image_encoder = HieraImageEncoder(config.hiera, d)
        self.memory_attention = MemoryAttention(d, d_mem)
        self.memory_encoder = MemoryEncoder(d_mem, d)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, d_mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, d_mem))
        self.sam_prompt_encoder = Sam2PromptEncoder(
            embed_dim=d, image_embedding_size=(e, e), input_image_size=(s, s))
        self.sam_mask_decoder = Sam2MaskDecoder(transformer_dim=d, transformer=TwoWayTransformer(
            depth=2, embedding_dim=d, num_heads=8, mlp_dim=2048))
        self.obj_ptr_proj = MLP(d, d, d, 3)
        self.obj_ptr_tpos_proj = nn.Linear(d, d_mem)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)

    @property
    def img_size(self) -> int:
        """S, the square model input."""
        return self.config.image_size

    @property
    def embedding_size(self) -> int:
        """E, the side of the image embedding (S / 16)."""
        return self.config.embedding_size

    # ------------------------------------------------------------------ image
    def encode_image(self, images: Tensor) -> ImageFeatures:
        """(B, 3, S, S) normalised images -> :class:`ImageFeatures`."""
        features, positions = self.image_encoder(images)
        s0 = self.sam_mask_decoder.conv_s0(features[0])
        s1 = self.sam_mask_decoder.conv_s1(features[1])
        return ImageFeatures(features[-1], positions[-1], [s0, s1])

    # ------------------------------------------------------------------ heads
    def decode(self, embedding: Tensor, high_res: list[Tensor], points: Tensor | None,
               labels: Tensor | None, mask_input: Tensor | None, multimask: bool):
        """Prompt heads on a (B, D, E, E) embedding: (low-res candidates (B, C, 4E, 4E),
        IoU (B, C), pointer tokens (B, C', D), object logits (B, 1)); masks where the
        object is absent are set to :data:`NO_OBJECT_LOGIT`."""
        b = embedding.shape[0]
        if points is None:  # SAM 2 always sends at least a padding point
            points = embedding.new_zeros(b, 1, 2)
            labels = -torch.ones(b, 1, dtype=torch.int32, device=embedding.device)
        size = self.sam_prompt_encoder.mask_input_size
        if mask_input is not None and tuple(mask_input.shape[-2:]) != tuple(size):
            mask_input = F.interpolate(mask_input.float(), size=size, mode="bilinear",
                                       align_corners=False, antialias=True)
        sparse, dense = self.sam_prompt_encoder.encode(points, labels, mask_input)
        out = self.sam_mask_decoder.decode(embedding, self.sam_prompt_encoder.get_dense_pe(),
                                           sparse, dense, high_res, multimask)
        present = out.object_logits > 0
        masks = torch.where(present[:, None, None], out.masks, NO_OBJECT_LOGIT).float()
        return masks, out.iou, out.tokens, out.object_logits

    def _pointer(self, token: Tensor, object_logits: Tensor) -> Tensor:
        """(B, D) object pointer from the chosen mask token; the learned "no object"
        pointer where the object is absent."""
        present = (object_logits > 0).float()
        return present * self.obj_ptr_proj(token) + (1 - present) * self.no_obj_ptr

    def heads(self, embedding: Tensor, high_res: list[Tensor], points: Tensor | None,
              labels: Tensor | None, mask_input: Tensor | None,
              multimask: bool, candidate: int | None = None) -> FrameOutput:
        """Decode prompts and keep the candidate with the highest predicted IoU (of a
        multimask output: ``candidate``, 0-2, where given)."""
        masks, iou, tokens, object_logits = self.decode(embedding, high_res, points, labels,
                                                       mask_input, multimask)
        s = self.config.image_size
        high = F.interpolate(masks, size=(s, s), mode="bilinear", align_corners=False)
        token = tokens[:, 0]
        if multimask:
            best = torch.argmax(iou, dim=-1)
            if candidate is not None:
                if not 0 <= int(candidate) < iou.shape[-1]:
                    raise ValueError(f"candidate {candidate}: the decoder gave "
                                     f"{iou.shape[-1]} candidate masks")
                best = torch.full_like(best, int(candidate))
            rows = torch.arange(masks.shape[0], device=masks.device)
            masks, high = masks[rows, best].unsqueeze(1), high[rows, best].unsqueeze(1)
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        return FrameOutput(masks, high, self._pointer(token, object_logits), object_logits,
                           iou)

    def mask_as_output(self, embedding: Tensor, high_res: list[Tensor],
                       mask: Tensor) -> FrameOutput:
        """A given (B, 1, S, S) mask taken as the slice's output (SAM 2.1 does this for
        mask prompts); its pointer comes from the heads run on the downsampled mask."""
        high = mask.float() * 20.0 - 10.0
        low = F.interpolate(high, size=(high.shape[-2] // 4, high.shape[-1] // 4),
                            mode="bilinear", align_corners=False, antialias=True)
        _, _, tokens, head_logits = self.decode(embedding, high_res, None, None,
                                                self.mask_downsample(mask.float()), False)
        present = torch.any(mask.flatten(1).float() > 0, dim=1)[:, None].float()
        object_logits = 20.0 * present - 10.0
        pointer = self._pointer(tokens[:, 0], head_logits)  # as Meta's: mixed twice
        pointer = present * pointer + (1 - present) * self.no_obj_ptr
        return FrameOutput(low, high, pointer, object_logits, mask.new_ones(mask.shape[0], 1))

    # ------------------------------------------------------------------ memory
    def encode_memory(self, embedding: Tensor, high_res_masks: Tensor,
                      object_logits: Tensor, from_points: bool = False) -> tuple[Tensor, Tensor]:
        """A slice's memory from its raw (B, D, E, E) embedding and (B, 1, S, S) mask
        logits -> memory (B, D_mem, E, E) and position encoding."""
        if from_points and self.config.binarize_prompted_memory:
            squashed = (high_res_masks > 0).float() * 20.0 - 10.0
        else:
            squashed = torch.sigmoid(high_res_masks) * 20.0 - 10.0
        memory, position = self.memory_encoder(embedding, squashed)
        absent = 1 - (object_logits > 0).float()
        memory = memory + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return memory, position

    def track_step(self, frame: int, image: ImageFeatures, bank: MemoryBank,
                   points: Tensor | None = None, labels: Tensor | None = None,
                   mask: Tensor | None = None, *, starts: bool = False,
                   num_frames: int | None = None, reverse: bool = False,
                   previous_logits: Tensor | None = None,
                   encode_memory: bool = True, candidate: int | None = None) -> FrameOutput:
        """Segment B objects on slice ``frame``.

        Parameters
        ----------
        image : ImageFeatures
            The slice's features, batch B (one per object).
        bank : MemoryBank
            The objects' memories of other slices (a batched bank: every entry holds B).
        points, labels : Tensor or None
            (B, P, 2) (x, y) in the model input frame and (B, P) labels (1, 0, 2, 3).
        mask : Tensor or None
            (B, 1, S, S) mask prompt: taken as the output.
        starts : bool
            The slice starts the objects (no memory is used).
        previous_logits : Tensor or None
            (B, 1, 4E, 4E): this slice's earlier output, refined by new clicks.
        candidate : int or None
            Which of a single click's three masks to keep (None: the best scoring).
        """
        if mask is not None:
            out = self.mask_as_output(image.features, image.high_res, mask)
        else:
            embedding = condition_on_memory(self, frame, image, bank, starts=starts,
                                            num_frames=num_frames, reverse=reverse)
            n_points = 0 if points is None else labels.shape[1]
            out = self.heads(embedding, image.high_res, points, labels, previous_logits,
                             multimask=n_points <= 1, candidate=candidate)
        if encode_memory:
            out.memory, out.memory_position = self.encode_memory(
                image.features, out.high_res_masks, out.object_logits, points is not None)
        return out
