"""SAM 2.1 in our engine against Meta's ``sam2`` package on identical random weights.

The reference is a test-only dependency: PyPI's ``sam2`` ships as a source distribution
whose build imports torch, so .ci/run installs it with ``--no-build-isolation --no-deps``
(and ``SAM2_BUILD_CUDA=0``); its model modules need neither torchvision nor hydra.
"""

from __future__ import annotations

import pytest
import torch

sam2_ref = pytest.importorskip(
    "sam2.modeling.backbones.hieradet",
    reason="Meta's sam2 (test-only reference) is not installed: "
    "SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps sam2")

from napari_sam.models.mask_decoder import TwoWayTransformer  # noqa: E402
from napari_sam.models.sam2 import HieraConfig, HieraImageEncoder  # noqa: E402
from napari_sam.models.sam2.decoder import (  # noqa: E402
    Sam2MaskDecoder,
    Sam2PromptEncoder,
    decoder_keys_from_meta,
)

TINY = HieraConfig()  # Hiera-T, the smallest official trunk
BASE_PLUS = HieraConfig(embed_dim=112, num_heads=2, stages=(2, 3, 16, 3),
                        global_blocks=(12, 16, 20), background_pos_size=(14, 14))


def _randomize(module: torch.nn.Module, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    sd = module.state_dict()
    sd = {k: torch.randn(v.shape, generator=gen) * 0.05 if v.is_floating_point() else v
          for k, v in sd.items()}
    module.load_state_dict(sd)
    return sd


def _reference_encoder(config: HieraConfig):
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    trunk = Hiera(embed_dim=config.embed_dim, num_heads=config.num_heads,
                  stages=config.stages, global_att_blocks=config.global_blocks,
                  window_pos_embed_bkg_spatial_size=config.background_pos_size,
                  window_spec=config.window_spec)
    neck = FpnNeck(PositionEmbeddingSine(256, warmup_cache=False), 256,
                   list(reversed(config.channels)), fpn_top_down_levels=[2, 3],
                   fpn_interp_model="nearest")
    return ImageEncoder(trunk=trunk, neck=neck, scalp=1).eval()


@pytest.mark.parametrize("config", [TINY, BASE_PLUS], ids=["hiera_t", "hiera_b+"])
def test_image_features_equal_the_reference(config):
    ref = _reference_encoder(config)
    sd = _randomize(ref)
    ours = HieraImageEncoder(config).eval()
    ours.load_state_dict(sd, strict=True)  # Meta's parameter names load unchanged
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(x)
        features, positions = ours(x)
    assert [tuple(f.shape) for f in features] == [(1, 256, 64, 64), (1, 256, 32, 32),
                                                  (1, 256, 16, 16)]
    for a, b in zip(expected["backbone_fpn"], features):
        assert (a - b).abs().max().item() <= 1e-4
    for a, b in zip(expected["vision_pos_enc"], positions):
        assert (a - b).abs().max().item() <= 1e-4


def test_mask_decoder_equals_the_reference_for_points_boxes_and_masks():
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.prompt_encoder import PromptEncoder
    from sam2.modeling.sam.transformer import TwoWayTransformer as RefTransformer

    e = 16
    ref_pe = PromptEncoder(embed_dim=256, image_embedding_size=(e, e),
                           input_image_size=(16 * e, 16 * e), mask_in_chans=16)
    ref_dec = MaskDecoder(
        transformer_dim=256, transformer=RefTransformer(depth=2, embedding_dim=256,
                                                        mlp_dim=2048, num_heads=8),
        use_high_res_features=True, iou_prediction_use_sigmoid=True, pred_obj_scores=True,
        pred_obj_scores_mlp=True, use_multimask_token_for_obj_ptr=True,
        dynamic_multimask_via_stability=True).eval()
    pe = Sam2PromptEncoder(embed_dim=256, image_embedding_size=(e, e),
                           input_image_size=(16 * e, 16 * e))
    dec = Sam2MaskDecoder(transformer_dim=256, transformer=TwoWayTransformer(
        depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048)).eval()
    pe.load_state_dict(_randomize(ref_pe, 1), strict=True)
    dec.load_state_dict(decoder_keys_from_meta(_randomize(ref_dec, 2)), strict=True)

    gen = torch.Generator().manual_seed(3)
    image = torch.randn(1, 256, e, e, generator=gen)
    high_res = [torch.randn(1, 32, 4 * e, 4 * e, generator=gen),
                torch.randn(1, 64, 2 * e, 2 * e, generator=gen)]
    points = torch.rand(2, 3, 2, generator=gen) * 16 * e
    labels = torch.tensor([[2, 3, 1], [1, 0, 1]])  # a box and a click; two clicks
    for mask_input in (None, torch.randn(2, 1, 4 * e, 4 * e, generator=gen)):
        for multimask in (True, False):
            with torch.no_grad():
                sparse, dense = ref_pe(points=(points, labels), boxes=None, masks=mask_input)
                expected = ref_dec(image, ref_pe.get_dense_pe(), sparse, dense, multimask,
                                   repeat_image=True, high_res_features=high_res)
                sparse, dense = pe.encode(points, labels, mask_input)
                got = dec.decode(image, pe.get_dense_pe(), sparse, dense, high_res, multimask)
            masks_equal = ((expected[0] > 0) == (got.masks > 0)).float().mean().item()
            assert masks_equal >= 0.999
            for a, b in zip(expected[1:], got[1:]):
                assert (a - b).abs().max().item() <= 1e-4
