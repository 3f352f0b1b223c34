"""An embedding store whose features chunk of a slice is missing or cut short while its hash
says the slice is stored: what a power cut can leave (zarr writes each chunk to a temporary
name and renames it, without ``fsync``: after the cut the hash's chunk may be on the disk
and the features' not, or empty), or a store copied in part. The slice was read as zeros
(its masks garbage, no word) or failed with "Zstd decompression error: invalid input data";
it is now computed again, and the store mended."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stacks import blob_stack


@pytest.mark.parametrize("cut", ["missing", "empty"])
def test_a_slice_whose_features_chunk_a_crash_cut_is_computed_again(tiny_sam, tmp_path, cut):
    import napari_sam as ns

    stack, store = blob_stack(), tmp_path / "emb.zarr"
    first = ns.embed(stack, tiny_sam, store=store, device="cpu")
    first.compute()
    before = first[2].features.clone()
    chunk = Path(store, "features", "c", "2", "0", "0", "0")
    assert chunk.is_file()
    if cut == "missing":
        chunk.unlink()
    else:
        chunk.write_bytes(b"")

    again = ns.embed(stack, tiny_sam, store=store, device="cpu")
    feats = again[2].features
    assert again.encoder_calls == 1  # slice 2 computed again, the others read back
    assert torch.equal(feats, before)
    assert np.asarray(again.stored()).all()
    third = ns.embed(stack, tiny_sam, store=store, device="cpu")  # the store is whole again
    assert torch.equal(third[2].features, before) and third.encoder_calls == 0
