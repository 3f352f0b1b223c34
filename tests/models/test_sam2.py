"""SAM 2.1 in our engine against Meta's ``sam2`` package on identical random weights.

The reference is a test-only dependency: PyPI's ``sam2`` ships as a source distribution
whose build imports torch, so .ci/run installs it with ``--no-build-isolation --no-deps``
(and ``SAM2_BUILD_CUDA=0``); the testing extra brings hydra-core and iopath, which its
package imports; torchvision is not needed.
"""

from __future__ import annotations

import pytest
import torch

sam2_ref = pytest.importorskip(
    "sam2.modeling.backbones.hieradet",
    reason="Meta's sam2 (test-only reference) is not importable: install the testing extra "
    "(hydra-core, iopath), then SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps "
    "sam2==1.1.0")

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


def _reference_sam2(image_size: int):
    """Meta's SAM2Base with the SAM 2.1 Hiera-T options (its yaml), built without hydra."""
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.modeling.sam2_base import SAM2Base

    def rope(**kw):
        return RoPEAttention(rope_theta=10000.0, feat_sizes=[64, 64], embedding_dim=256,
                             num_heads=1, downsample_rate=1, dropout=0.1, **kw)

    layer = MemoryAttentionLayer(
        activation="relu", dim_feedforward=2048, dropout=0.1, pos_enc_at_attn=False,
        d_model=256, pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        self_attention=rope(), cross_attention=rope(rope_k_repeat=True, kv_in_dim=64))
    memory_encoder = MemoryEncoder(
        out_dim=64, mask_downsampler=MaskDownSampler(kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=256, kernel_size=7, padding=3, layer_scale_init_value=1e-6,
                            use_dwconv=True), num_layers=2),
        position_encoding=PositionEmbeddingSine(64, warmup_cache=False))
    return SAM2Base(
        image_encoder=_reference_encoder(TINY),
        memory_attention=MemoryAttention(d_model=256, pos_enc_at_input=True, layer=layer,
                                         num_layers=4),
        memory_encoder=memory_encoder, num_maskmem=7, image_size=image_size,
        sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True, directly_add_no_mem_embed=True,
        no_obj_embed_spatial=True, use_high_res_features_in_sam=True,
        multimask_output_in_sam=True, iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True, add_tpos_enc_to_obj_ptrs=True,
        proj_tpos_enc_in_obj_ptrs=True, use_signed_tpos_enc_to_obj_ptrs=True,
        only_obj_ptrs_in_the_past_for_eval=True, pred_obj_scores=True,
        pred_obj_scores_mlp=True, fixed_no_obj_ptr=True, multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True, multimask_min_pt_num=0, multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        sam_mask_decoder_extra_args=dict(dynamic_multimask_via_stability=True,
                                         dynamic_multimask_stability_delta=0.05,
                                         dynamic_multimask_stability_thresh=0.98)).eval()


@pytest.mark.parametrize("reverse", [False, True], ids=["forwards", "backwards"])
def test_tracking_steps_equal_the_reference(reverse):
    """Two objects: clicks on the first slice, a mask prompt on a later one, and memory-
    conditioned slices between and after: masks, pointers and memories equal Meta's."""
    from napari_sam.models.sam2.memory_bank import MemoryBank
    from napari_sam.models.sam2.model import Sam2Config, Sam2Model

    size, n_frames, batch = 128, 7, 2
    ref = _reference_sam2(size)
    gen = torch.Generator().manual_seed(5)
    sd = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in ref.state_dict().items()}
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = torch.tensor([3.0])  # present
    ref.load_state_dict(sd)
    ours = Sam2Model(Sam2Config(image_size=size, binarize_prompted_memory=False)).eval()
    ours.load_state_dict(decoder_keys_from_meta(sd), strict=True)

    frames = torch.randn(n_frames, 3, size, size, generator=gen)
    points = torch.rand(batch, 1, 2, generator=gen) * size
    labels = torch.ones(batch, 1, dtype=torch.int32)
    mask = (torch.rand(batch, 1, size, size, generator=gen) > 0.6).float()
    order = list(range(n_frames))[::-1] if reverse else list(range(n_frames))
    clicked, masked = order[0], order[4]
    expected_bank = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    bank = MemoryBank()
    with torch.no_grad():
        for t in order:
            _, feats, pos, sizes = ref._prepare_backbone_features(
                ref.forward_image(frames[t: t + 1]))
            feats = [x.expand(-1, batch, -1) for x in feats]
            pos = [x.expand(-1, batch, -1) for x in pos]
            prompted = t in (clicked, masked)
            expected = ref.track_step(
                frame_idx=t, is_init_cond_frame=t == clicked, current_vision_feats=feats,
                current_vision_pos_embeds=pos, feat_sizes=sizes,
                point_inputs={"point_coords": points, "point_labels": labels}
                if t == clicked else None,
                mask_inputs=mask if t == masked else None, output_dict=expected_bank,
                num_frames=n_frames, track_in_reverse=reverse)
            got = ours.track_step(
                t, ours.encode_image(frames[t: t + 1]).expand(batch), bank,
                points if t == clicked else None, labels if t == clicked else None,
                mask if t == masked else None, starts=t == clicked, num_frames=n_frames,
                reverse=reverse)
            key = "cond_frame_outputs" if prompted else "non_cond_frame_outputs"
            expected_bank[key][t] = expected
            (bank.prompted if prompted else bank.tracked)[t] = got
            same = ((expected["pred_masks_high_res"] > 0) == (got.high_res_masks > 0))
            assert same.float().mean().item() >= 0.999, t
            assert (expected["obj_ptr"] - got.pointer).abs().max().item() <= 1e-4
            assert (expected["maskmem_features"] - got.memory).abs().max().item() <= 1e-4
            assert (expected["object_score_logits"] - got.object_logits).abs().max() <= 1e-4


def test_a_meta_format_checkpoint_loads_with_its_size_inferred(tmp_path):
    from napari_sam.models.sam2.checkpoint import SAM2_CONFIGS, infer_sam2_config, load_sam2
    from napari_sam.models.sam2.model import Sam2Model

    config = SAM2_CONFIGS["sam2.1_hiera_tiny"]
    model = Sam2Model(config)
    # Meta's layout: {"model": state dict} with Meta's names for the transformer MLPs
    state = {k.replace(".mlp.lin1.", ".mlp.layers.0.").replace(".mlp.lin2.", ".mlp.layers.1.")
             if k.startswith("sam_mask_decoder.transformer.") else k: v
             for k, v in model.state_dict().items()}
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": state}, path)
    assert infer_sam2_config(state)[0] == "sam2.1_hiera_tiny"
    loaded = load_sam2(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_a_sam1_checkpoint_is_refused_with_what_to_use_instead():
    from napari_sam.models.sam2.checkpoint import infer_sam2_config

    with pytest.raises(ValueError, match="not a SAM 2 checkpoint.*load_model"):
        infer_sam2_config({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)})


def test_propagation_of_two_objects_equals_metas_video_predictor(monkeypatch):
    """16 slices, two objects prompted on slice 5 (a click; a box and a click) and one of
    them again on slice 11: forwards then backwards, as Meta's video predictor on the same
    frames (its frame loader is replaced by the same tensors: no files)."""
    import sam2.sam2_video_predictor as svp

    from napari_sam.models.sam2.model import Sam2Config, Sam2Model
    from napari_sam.models.sam2.propagation import Sam2Prompts, Sam2Tracker

    size, n = 128, 16
    base = _reference_sam2(size)
    gen = torch.Generator().manual_seed(7)
    sd = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in base.state_dict().items()}
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = torch.tensor([3.0])
    ref = svp.SAM2VideoPredictor.__new__(svp.SAM2VideoPredictor)
    ref.__dict__ = base.__dict__  # the same modules and options ...
    ref.fill_hole_area, ref.non_overlap_masks = 0, False  # ... plus the predictor's own
    ref.clear_non_cond_mem_around_input = ref.add_all_frames_to_correct_as_cond = False
    ref.binarize_mask_from_pts_for_mem_enc = True
    ref.load_state_dict(sd)
    ref.eval()
    frames = torch.randn(n, 3, size, size, generator=gen)
    monkeypatch.setattr(svp, "load_video_frames", lambda **kw: (frames, size, size))
    state = ref.init_state("frames-in-memory")
    click = torch.tensor([[40.0, 60.0]])
    box = torch.tensor([70.0, 20.0, 110.0, 90.0])
    ref.add_new_points_or_box(state, 5, 1, points=click, labels=torch.tensor([1]))
    ref.add_new_points_or_box(state, 5, 2, points=torch.tensor([[90.0, 50.0]]),
                              labels=torch.tensor([1]), box=box)
    ref.add_new_points_or_box(state, 11, 1, points=torch.tensor([[45.0, 64.0]]),
                              labels=torch.tensor([1]))
    expected = {}
    with torch.no_grad():
        for reverse in (False, True):
            for z, _, masks in ref.propagate_in_video(state, reverse=reverse):
                expected[z] = masks > 0

    ours = Sam2Model(Sam2Config(image_size=size)).eval()
    ours.load_state_dict(decoder_keys_from_meta(sd), strict=True)
    tracker = Sam2Tracker(ours, lambda z: frames[z], n)
    one = Sam2Prompts(points={5: (click, torch.tensor([1])),
                                11: (torch.tensor([[45.0, 64.0]]), torch.tensor([1]))})
    two = Sam2Prompts(points={5: (torch.cat([box.reshape(2, 2), torch.tensor([[90.0, 50.0]])]),
                                    torch.tensor([2, 3, 1]))})
    got = {}
    with torch.no_grad():  # both objects in one pass: each slice is encoded once per sweep
        for z, oid, out in tracker.propagate_all({0: one, 1: two}):
            high = torch.nn.functional.interpolate(
                out.low_res_masks, size=(size, size), mode="bilinear", align_corners=False)
            got[(z, oid)] = high[0, 0] > 0
    assert tracker.encoder_calls <= 2 + n + 6  # prompted slices, forwards, backwards
    assert sorted(expected) == list(range(n))
    for z in range(n):
        for index in range(2):
            same = (expected[z][index, 0] == got[(z, index)]).float().mean().item()
            assert same >= 0.999, (z, index, same)
    covered = torch.stack([expected[z].float().mean() for z in range(n)])
    assert 0.05 < covered.mean() < 0.95  # the masks are neither empty nor everything


def _tiny_sam2(size: int = 128, seed: int = 11):
    """A random SAM 2.1 Hiera-T at ``size`` px whose object head says "present"."""
    from napari_sam.models.sam2.model import Sam2Config, Sam2Model

    model = Sam2Model(Sam2Config(image_size=size)).eval()
    gen = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in model.state_dict().items()}
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = torch.tensor([3.0])
    model.load_state_dict(sd)
    return model


def test_segment_volume_sam2_reads_a_16_bit_stack_and_returns_a_volume_result():
    import numpy as np

    from napari_sam.sam2_volume import segment_volume_sam2

    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4000, size=(6, 40, 56)).astype(np.uint16)
    calls = []
    result = segment_volume_sam2(
        stack, {3: [{"slice": 2, "points": [[20, 30]]}],
                7: [{"slice": 2, "box": [5, 5, 30, 25]}]}, _tiny_sam2(),
        stop_after_absent=None, progress=lambda d, t: calls.append((d, t)))
    assert result.labels.shape == stack.shape and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {0, 3, 7} and result.object_ids
    for oid in result.object_ids:
        first, last = result.slice_range[oid]
        assert first <= 2 <= last
        assert result.stop_reasons[oid] == {"up": "edge", "down": "edge"}
        assert set(result.scores[oid]) == set(range(first, last + 1))
    assert calls[-1][0] == calls[-1][1] == 12  # 2 objects x 6 slices


def test_segment_volume_sam2_names_bad_input():
    import numpy as np

    from napari_sam.sam2_volume import segment_volume_sam2

    model = _tiny_sam2()
    with pytest.raises(ValueError, match="needs a \\(Z, Y, X\\) stack.*channel"):
        segment_volume_sam2(np.zeros((4, 32, 32, 3)), {1: {"slice": 0, "points": [[5, 5]]}},
                            model)
    with pytest.raises(ValueError, match="slice 9, outside the stack's 4 slices"):
        segment_volume_sam2(np.zeros((4, 32, 32)), {1: {"slice": 9, "points": [[5, 5]]}},
                            model)
    with pytest.raises(TypeError, match="needs a SAM 2 model.*segment_volume"):
        segment_volume_sam2(np.zeros((4, 32, 32)), {1: {"slice": 0, "points": [[5, 5]]}},
                            object())
