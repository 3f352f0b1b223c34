"""A Setup change (model, device, precision, tiling, store) never drops the preview without a
word (a new user's walk through the dock, session 26): choosing the same setting again keeps
it; a change previews the kept prompts again (live) or says what went and how to get it back.
Before, the preview or a finished propagation vanished while the status line still said
"Shift+C commits", and Shift+C then said there was nothing to commit."""

from __future__ import annotations

import numpy as np


def test_the_same_model_chosen_again_keeps_the_preview_and_the_propagation(session):
    s = session
    s.add_point(3, 20, 20)
    s.update_preview()
    mask = s.previews[0].mask.copy()
    s.set_model(s.model_choice)  # the Model box: the same entry chosen again
    s.set_store(None)  # Return in the empty store field
    assert s.previews and np.array_equal(s.previews[0].mask, mask)
    s.propagate()
    assert s.volume is not None
    s.set_model(s.model_choice)
    assert s.volume is not None
    assert s.commit().ids == [1]


def test_a_setting_change_previews_the_kept_prompts_again(session):
    s = session
    s.add_point(3, 20, 20)
    s.update_preview()
    emb = s.emb
    s.set_tiling(False)  # other embeddings (kept per tiling choice)
    assert s.emb is not emb
    assert s.previews, "the preview was dropped and not computed again"
    assert s.status.startswith("Large images are shrunk to the model input. point object: "
                               "score") and s.status.endswith("Shift+C commits."), s.status
    assert s.commit().ids == [1]


def test_a_tiling_change_after_propagating_says_to_propagate_again(session):
    s = session
    s.add_point(3, 20, 20)
    s.propagate()
    assert s.volume is not None
    s.set_tiling(False)
    assert s.volume is None and len(s.points) == 1  # the prompts stay
    assert s.status == ("Large images are shrunk to the model input. The propagated preview "
                        "was made before this change and was dropped; the prompts are kept: "
                        "press Shift+D to propagate again."), s.status
    s.live = False
    s.set_tiling(True)  # nothing shown: the usual line
    assert s.status.startswith("Large images are embedded in tiles")
    s.update_preview()
    s.set_tiling(False)
    assert not s.previews
    assert s.status.endswith("the prompts are kept: press Shift+S to preview them again."), \
        s.status
