"""An embedding just computed and the same read back from the store decode the same in bf16:
a run resumed from its store (after a full disk, say) writes a clean run's labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from stacks import blob_stack


@pytest.mark.parametrize("model", ["tiny_sam", "demo"])
def test_fresh_and_stored_embeddings_decode_alike_in_bf16(model, tmp_path, request):
    """The encoder's embeddings were channels-last, the store's contiguous: equal values,
    but bf16 decodes on the CPU differed (``segment`` resumed after a full disk gave 166
    other pixels than a clean run on the demo model; fp32 gave the same)."""
    sam = request.getfixturevalue("tiny_sam") if model == "tiny_sam" else ns.load_model("demo")
    stack = blob_stack(z=2)
    store = tmp_path / "e.zarr"
    fresh = ns.embed(stack, sam, store=store, device="cpu", precision="bf16").compute()
    stored = ns.embed(stack, sam, store=store, device="cpu", precision="bf16").compute()
    assert stored.encoder_calls == 0  # read back, not computed again
    pred = fresh.predictor
    out = []
    for emb in (fresh[0], stored[0]):
        assert torch.equal(emb.features, fresh[0].features)  # the same values
        pred.set_embedding(emb)
        out.append(pred.predict(points=[[20, 20], [44, 44]], labels=[1, 0], multimask=True))
    (m1, s1, l1), (m2, s2, l2) = out
    assert np.array_equal(l1, l2) and np.array_equal(s1, s2) and np.array_equal(m1, m2)
    assert fresh[0].features.stride() == stored[0].features.stride()


def test_segment_resumed_from_its_store_writes_a_clean_runs_labels_in_bf16(
        tmp_path, offline_cli, capsys):
    """``segment`` resumed after a failure (its work folder's embeddings read back) wrote
    other labels than a clean run in bf16."""
    import shutil

    from cli_runner import cli

    data = tmp_path / "in"  # (on blob stacks both layouts decoded alike)
    assert cli(["sample", "nuclei-3d", "-o", data, "--shape", "8,96,96", "-q"], capsys)[0] == 0
    prompts = data / "prompts.csv"
    args = ["segment", data, "--prompts", prompts, "--model", "demo", "--precision", "bf16",
            "-q"]
    assert cli([*args, "-o", tmp_path / "clean", "--keep-work"], capsys)[0] == 0
    shutil.copytree(tmp_path / "clean", tmp_path / "again")
    assert cli([*args, "-o", tmp_path / "again", "--overwrite"], capsys)[0] == 0
    name = "nuclei-3d_seed10000_labels.tif"
    clean = (tmp_path / "clean" / name).read_bytes()
    assert (tmp_path / "again" / name).read_bytes() == clean
