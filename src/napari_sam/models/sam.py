"""The assembled Segment Anything model with its pixel statistics."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SamConfig, config_from_state_dict
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

__all__ = ["Sam"]


def _bundled_demo_id() -> str | None:
    """The model id a path load of the bundled demo weights gets (``"file:<sha256[:12]>"``),
    or None where the demo is not installed (file digests are remembered, so this is cheap)."""
    from pathlib import Path

    from .catalog import DEMO_NAME, MODEL_SPECS
    from .download import file_model_id

    name = next(spec.filename for spec in MODEL_SPECS if spec.name == DEMO_NAME)
    try:  # the registry's where("demo"): the package's weights/ folder
        return file_model_id(Path(__file__).resolve().parent.parent / "weights" / name)
    except OSError:
        return None


class Sam(nn.Module):
    """Image encoder + prompt encoder + mask decoder.

    Parameters
    ----------
    image_encoder : nn.Module
        ``ImageEncoderViT`` or ``ImageEncoderCNN``: (B, 3, S, S) -> (B, 256, E, E); must have
        an ``img_size`` attribute.
    prompt_encoder : PromptEncoder
    mask_decoder : MaskDecoder
    pixel_mean, pixel_std : sequence of 3 floats
        RGB statistics on the 0..255 scale (non-persistent buffers of shape (3, 1, 1)).
    config : SamConfig, optional
        The architecture; inferred from the modules' state_dict when omitted.

    The state_dict keys are those of Meta's ``segment_anything.modeling.Sam``.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"
    family = "sam1"  # SAM 2.1 models (models.sam2.Sam2Model) say "sam2"

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float] = (123.675, 116.28, 103.53),
        pixel_std: Sequence[float] = (58.395, 57.12, 57.375),
        config: SamConfig | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer(
            "pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False
        )
        if config is None:
            config = config_from_state_dict(self.state_dict())
        self._config = config
        self._model_id: str | None = None
        #: thresholds of ``segment_everything`` recommended for this model's score calibration
        #: (keys ``pred_iou_thresh``, ``stability_score_thresh``), set by the loader from the
        #: checkpoint's metadata file (key ``"automatic"``); empty means SAM's defaults (0.88, 0.95)
        self.automatic_defaults: dict[str, float] = {}
        #: Gaussian sigma (image pixels) applied to images the model input enlarges, before
        #: the resize (:func:`napari_sam.preprocess.smooth_before_enlarging`); set by the loader
        #: from the checkpoint's metadata file (key ``"input_smoothing"``); 0 means none (SAM's)
        self.input_smoothing: float = 0.0
        #: where :meth:`napari_sam.Predictor.predict` cuts masks by default (``"threshold"``:
        #: at ``mask_threshold``, SAM's rule; ``"edge"``: on the strongest image edges,
        #: :mod:`napari_sam.edge_threshold`), set by the loader from the checkpoint's metadata
        #: file (key ``"mask_boundary"``)
        self.mask_boundary: str = "threshold"

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> SamConfig:
        """The architecture (:class:`~napari_sam.models.config.SamConfig`)."""
        return self._config

    @property
    def img_size(self) -> int:
        """Side S of the square model input."""
        return int(self.image_encoder.img_size)

    @property
    def embedding_size(self) -> int:
        """Side E of the image embedding (256, E, E); low-resolution masks are (4E, 4E)."""
        return int(self.prompt_encoder.image_embedding_size[0])

    @property
    def is_demo(self) -> bool:
        """True for the bundled demo model: loaded as ``"demo"`` (model id ``"demo:..."``) or
        from the bundled weights file by its path. A checkpoint of the same CNN architecture
        (e.g. one trained from the demo) is not the demo; a CNN model built in memory, which
        no loader named, counts as the demo architecture."""
        if self._config.encoder != "cnn":
            return False
        if self._model_id is None:
            return True
        own = self._model_id.split("+", 1)[0]  # without the "+smooth..." part
        return own.startswith("demo:") or (own.startswith("file:")
                                           and own == _bundled_demo_id())

    @property
    def model_id(self) -> str:
        """Identifier used in embedding cache keys (set by the loader; default from config)."""
        return self._model_id if self._model_id is not None else self._config.default_model_id()

    @model_id.setter
    def model_id(self, value: str) -> None:
        self._model_id = str(value)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ image side
    def normalize_and_pad(self, x: Tensor) -> Tensor:
        """Normalise colours and zero-pad bottom/right to the model input size.

        Parameters
        ----------
        x : Tensor
            (B, 3, h, w) or (3, h, w) float on the 0..255 scale, with ``max(h, w) <= S``.

        Returns
        -------
        Tensor
            (B, 3, S, S) (or (3, S, S)), exactly like Meta's ``Sam.preprocess``.
        """
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        s = self.img_size
        if h > s or w > s:
            raise ValueError(f"image of size {(h, w)} is larger than the model input {s}")
        return F.pad(x, (0, s - w, 0, s - h))

    def encode(self, x: Tensor) -> Tensor:
        """Image embeddings: x (B, 3, S, S) normalised and padded -> (B, 256, E, E).

        The input is cast to the encoder's parameter dtype, so an encoder converted with
        ``sam.image_encoder.to(torch.bfloat16)`` (fastest on CPUs with bf16 support) works
        unchanged; the embeddings then come out in that dtype.
        """
        dtype = next(self.image_encoder.parameters()).dtype
        if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
            x = x.to(dtype)
        return self.image_encoder(x)

    # ------------------------------------------------------------------ prompt side
    def decode(
        self,
        embeddings: Tensor,
        points: tuple[Tensor, Tensor] | None = None,
        boxes: Tensor | None = None,
        masks: Tensor | None = None,
        multimask: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Decode N prompts in one call.

        Parameters
        ----------
        embeddings : Tensor
            (N, 256, E, E), or (1, 256, E, E) shared by all N prompts (broadcast, not copied).
        points : (coords (N, P, 2) float, labels (N, P) int), optional
            (x, y) in the model input frame; labels 1 positive, 0 negative, -1 padding.
        boxes : Tensor, optional
            (N, 4) x0, y0, x1, y1 in the model input frame.
        masks : Tensor, optional
            (N, 1, 4E, 4E) mask logits from a previous prediction.
        multimask : bool
            Three candidate masks (tokens 1..3) instead of one (token 0).

        Returns
        -------
        low_res_logits : Tensor
            (N, C, 4E, 4E), C = 3 if ``multimask`` else 1.
        iou_predictions : Tensor
            (N, C).
        """
        if embeddings.dim() == 3:
            embeddings = embeddings.unsqueeze(0)
        dev = embeddings.device
        if points is not None:
            coords, labels = points
            coords = torch.as_tensor(coords, device=dev)
            labels = torch.as_tensor(labels, device=dev)
            if coords.dim() == 2:
                coords, labels = coords[None], labels.reshape(1, -1)
            points = (coords, labels)
        if boxes is not None:
            boxes = torch.as_tensor(boxes, device=dev).reshape(-1, 4)
        if masks is not None:
            masks = torch.as_tensor(masks, device=dev)
            if masks.dim() == 3:
                masks = masks.unsqueeze(1)
            masks = masks.to(self.prompt_encoder.no_mask_embed.weight.dtype)
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=masks)
        n = sparse.shape[0]
        if embeddings.shape[0] not in (1, n):
            raise ValueError(
                f"got {embeddings.shape[0]} embeddings for {n} prompts (need 1 or {n})"
            )
        return self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    def forward(
        self,
        x: Tensor,
        points: tuple[Tensor, Tensor] | None = None,
        boxes: Tensor | None = None,
        masks: Tensor | None = None,
        multimask: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Encode one normalised image x (1, 3, S, S) and decode N prompts (see :meth:`decode`)."""
        return self.decode(
            self.encode(x), points=points, boxes=boxes, masks=masks, multimask=multimask
        )
