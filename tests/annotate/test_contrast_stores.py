"""The embedding stores of the layer's contrasts are bounded (annotate.contrast_stores): the
stores of the few most recent contrasts are kept, older ones this session made are deleted,
and nothing else ever is (the user's store, stores made before, folders with other files)."""

from __future__ import annotations

import numpy as np

from napari_sam.annotate.contrast_stores import KEEP_CONTRAST_STORES


def _stores(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("emb.contrast-*.zarr"))


def _size(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_a_dragged_contrast_leaves_a_bounded_number_of_stores(session, tmp_path):
    """Before: each of the 8 contrasts left its store (8 stores, growing with each change)."""
    s = session
    s.set_store(str(tmp_path / "emb.zarr"))
    s.compute_embeddings([3])  # the percentiles', in the user's store: never deleted
    user = _size(tmp_path / "emb.zarr")
    before = _stores(tmp_path)
    (tmp_path / "emb.contrast-1-50.zarr").mkdir()  # another's (not made by this session)
    (tmp_path / "emb.contrast-1-50.zarr" / "notes.txt").write_text("mine")
    sizes = []
    for hi in range(60, 140, 10):  # 8 changes, each embedded
        s.set_model_contrast((0, hi))
        s.compute_embeddings([3])
        sizes.append(_size(tmp_path))
    assert before == [] and KEEP_CONTRAST_STORES == 3
    assert _stores(tmp_path) == ["emb.contrast-0-110.zarr", "emb.contrast-0-120.zarr",
                                 "emb.contrast-0-130.zarr", "emb.contrast-1-50.zarr"]
    s.set_model_contrast((1, 50))  # a folder this session did not make: kept (and counted)
    s.set_model_contrast((0, 130))
    assert _stores(tmp_path) == ["emb.contrast-0-120.zarr", "emb.contrast-0-130.zarr",
                                 "emb.contrast-1-50.zarr"]
    assert (tmp_path / "emb.contrast-1-50.zarr" / "notes.txt").read_text() == "mine"
    assert _size(tmp_path / "emb.zarr") == user
    # disk use stopped growing after the third contrast (compressed chunks vary a little)
    assert max(sizes[KEEP_CONTRAST_STORES - 1:]) < 1.1 * sizes[KEEP_CONTRAST_STORES - 1], sizes


def test_a_deleted_contrasts_embeddings_are_made_again_in_a_sound_store(session, tmp_path):
    """Going back to a contrast whose store was deleted embeds again into a new store (the
    embeddings kept in memory for it are forgotten: their writes made a store without its
    zarr metadata)."""
    from napari_sam.embeddings import is_embedding_store

    s = session
    s.set_store(str(tmp_path / "emb.zarr"))
    s.set_model_contrast((0, 60))
    s.compute_embeddings([3])
    first = s.emb[3].features.detach().cpu().float().numpy()
    for hi in (70, 80, 90):
        s.set_model_contrast((0, hi))
        s.compute_embeddings([3])
    assert not (tmp_path / "emb.contrast-0-60.zarr").exists()
    s.set_model_contrast((0, 60))
    assert "slices are embedded again" in s.status, s.status
    s.compute_embeddings([3])
    assert is_embedding_store(tmp_path / "emb.contrast-0-60.zarr")
    again = s.emb[3].features.detach().cpu().float().numpy()
    assert np.allclose(again, first, atol=1e-2)


def test_only_own_stores_pass_the_marker_check(tmp_path):
    import zarr

    from napari_sam.embeddings import is_embedding_store

    other = zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    other.create_array("features", shape=(1,), dtype="f4")
    assert not is_embedding_store(tmp_path / "other.zarr")  # no owner mark
    assert not is_embedding_store(tmp_path / "none.zarr")
    (tmp_path / "file.zarr").write_text("x")
    assert not is_embedding_store(tmp_path / "file.zarr")


def test_limits_that_agree_to_six_digits_get_stores_of_their_own(session, tmp_path):
    """Before: (0, 100.00001) and (0, 100.00002) were both ``emb.contrast-0-100.zarr``: each
    contrast cleared the other's store, and the embeddings kept in memory for the first
    wrote their features under the second's key."""
    import json

    import zarr

    s = session
    s.set_store(str(tmp_path / "emb.zarr"))
    for hi in (100.00001, 100.00002):
        s.set_model_contrast((0, hi))
        s.compute_embeddings([3])
    assert _stores(tmp_path) == ["emb.contrast-0-100.00001.zarr",
                                 "emb.contrast-0-100.00002.zarr"]
    for name, hi in zip(_stores(tmp_path), (100.00001, 100.00002)):
        key = json.loads(zarr.open_group(str(tmp_path / name), mode="r").attrs["key"])
        assert key["contrast_limits"] == [0.0, hi]
    s.set_model_contrast((0, 190))
    assert s.contrast_store() == str(tmp_path / "emb.contrast-0-190.zarr")
