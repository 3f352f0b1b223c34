"""The contrast limits the model sees (annotate.model_contrast): embeddings are kept per
limits, and a zarr store written under other limits is never read as this contrast's."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate.errors import UserError


def _features(emb, z):
    return emb[z].features.detach().cpu().float().numpy()


def test_limits_reach_the_embeddings_and_switching_back_reuses_them(session):
    from napari_sam.embeddings import stack_intensity_limits

    s = session
    s.compute_embeddings([3])
    before = s.emb
    assert before.contrast_limits == pytest.approx(stack_intensity_limits(s.source.stack))
    s.set_model_contrast((0, 90))
    assert s.status.startswith("Contrast changed: slices are embedded again with the layer's "
                               "limits (0-90)."), s.status
    s.compute_embeddings([3])
    assert s.emb is not before and s.emb.contrast_limits == (0.0, 90.0)
    assert not np.allclose(_features(s.emb, 3), _features(before, 3))
    s.set_model_contrast(None)
    assert s.emb is before  # kept: no slice is embedded again
    assert "again (their embeddings were kept)" in s.status, s.status
    with pytest.raises(UserError, match="contrast_limits must be two finite numbers"):
        s.set_model_contrast((5, np.nan))


def test_a_store_written_under_other_limits_is_not_read_back(session, tmp_path):
    from napari_sam.embeddings import StackEmbeddings

    s = session
    s.set_store(str(tmp_path / "emb.zarr"))
    s.compute_embeddings([3])  # the percentiles' embeddings: slice 3 only
    s.set_model_contrast((0, 90))
    s.compute_embeddings([3, 4])  # the store now holds slice 4 under (0, 90)
    user4 = _features(s.emb, 4)
    s.set_model_contrast(None)
    s.compute_embeddings([4])
    got = _features(s.emb, 4)
    fresh = StackEmbeddings(s.source.stack, s.predictor.model, predictor=s.predictor)
    ref = _features(fresh, 4)
    # float16 in the store: close to a fresh percentile embedding, far from the (0, 90) one
    assert np.abs(got - ref).max() < 0.05 * np.abs(user4 - ref).max()
