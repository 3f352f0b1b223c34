"""Model configs small enough for unit tests, and checkpoint files made of them (also as our
trainer saves them); importable from any test module.

(``conftest`` is not importable by name: tests/_qt has its own conftest.py.)
"""

# a ViT small enough for unit tests (about 0.1 s per 256 px image on 2 CPU cores)
TINY_VIT = dict(
    encoder="vit",
    img_size=256,
    patch_size=16,
    encoder_embed_dim=64,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    window_size=7,
    decoder_depth=1,
    decoder_mlp_dim=256,
    name="tiny_vit",
)

# a CNN-encoder (demo architecture) model for command-line and batch tests: 128 px input,
# written to a checkpoint with its config in the JSON metadata file
TINY_CNN = dict(
    encoder="cnn",
    img_size=128,
    cnn_widths=(8, 16, 24, 32),
    cnn_depths=(1, 1, 1, 1),
    cnn_fpn_dim=32,
    decoder_depth=1,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
    name="tiny_cnn",
)

# the smallest models with every part of SAM, for registry tests that write, serve and hash
# many checkpoint files: a 32 px ViT (4 x 4 patches) and a 64 px CNN
SMALLEST_VIT = dict(
    img_size=32,
    patch_size=8,
    encoder_embed_dim=16,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    window_size=2,
    prompt_embed_dim=32,
    mask_in_chans=4,
    decoder_mlp_dim=32,
    decoder_num_heads=2,
    iou_head_hidden_dim=16,
)
SMALLEST_CNN = dict(
    encoder="cnn",
    img_size=64,
    cnn_widths=(8, 8, 16, 16),
    cnn_depths=(1, 1, 1, 1),
    cnn_fpn_dim=16,
    prompt_embed_dim=32,
    mask_in_chans=4,
    decoder_mlp_dim=32,
    decoder_num_heads=2,
    iou_head_hidden_dim=16,
)

# a 64 px CNN with a narrow (64-channel) prompt encoder and decoder for training tests
TRAIN_CNN = dict(
    encoder="cnn",
    img_size=64,
    cnn_widths=(8, 16, 32, 32),
    cnn_depths=(1, 1, 1, 1),
    cnn_fpn_dim=32,
    prompt_embed_dim=64,
    mask_in_chans=4,
    decoder_depth=1,
    decoder_mlp_dim=64,
    decoder_num_heads=4,
    iou_head_hidden_dim=32,
)


def save_tiny_cnn(folder):
    """Write a random :data:`TINY_CNN` checkpoint (seed 0) as ``folder/tiny.pt`` with its
    config in ``tiny.pt.json``, as the command-line and batch tests load it; returns the path."""
    import json
    from pathlib import Path

    import torch

    from napari_sam.models.build import SamConfig, build_sam

    cfg = SamConfig(**TINY_CNN)
    torch.manual_seed(0)
    path = Path(folder) / "tiny.pt"
    torch.save(build_sam(cfg).state_dict(), path)
    path.with_name("tiny.pt.json").write_text(json.dumps({"config": cfg.to_dict()}))
    return path


def save_tiny(path, model, config):
    """Save ``model`` (built from ``config``) as the checkpoint ``path`` with its config in
    ``path.json``, as a user's checkpoint file; returns the path."""
    import json
    from pathlib import Path

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    path.with_name(path.name + ".json").write_text(json.dumps({"config": config.to_dict()}))
    return path


#: what the training run chose for its model (recorded in FILE.json by save_checkpoint)
TRAINED = {"automatic": {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.55,
                         "box_nms_thresh": 0.3},
           "input_smoothing": 0.7, "mask_boundary": "edge"}


def random_sam(config: dict, seed: int):
    """A randomly initialised model of ``config`` (seeded)."""
    import torch

    from napari_sam.models import SamConfig, build_sam

    torch.manual_seed(seed)
    return build_sam(SamConfig(**config))


def trained_pair(path, config: dict | None = None, seed: int = 0):
    """``path`` and ``path.json`` as our trainer saves them, for a model with the settings
    :data:`TRAINED`; returns ``path``."""
    from napari_sam.training.checkpoint import save_checkpoint

    model = random_sam(TINY_VIT if config is None else config, seed)
    model.automatic_defaults = dict(TRAINED["automatic"])
    model.input_smoothing = TRAINED["input_smoothing"]
    model.mask_boundary = TRAINED["mask_boundary"]
    return save_checkpoint(model, path, {"trained_by": "napari_sam.training.run", "epochs": 1})


def download_over(path, config: dict | None = None) -> None:
    """Replace the checkpoint ``path`` by another model in Meta's format (a bare state_dict),
    as a download or a copy saved under its name does; its FILE.json stays."""
    import torch

    torch.save(random_sam(TINY_VIT if config is None else config, 1).state_dict(), path)
