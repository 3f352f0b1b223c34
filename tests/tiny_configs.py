"""Model configs small enough for unit tests; importable from any test module.

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
