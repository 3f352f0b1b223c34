"""The candidate Shift+M shows is the one Propagate starts from, the preview keeps it when
the slice is shown again, and a saved session replays it (plain Python, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest


def _choose_other(s):
    """Cycle the preview's candidates (Shift+M) to one whose mask differs from the best
    scoring one; returns (preview, chosen index, best index)."""
    (p,) = s.update_preview()
    best = p.index
    assert p.n_candidates == 3 and best == int(np.argmax(p.scores))
    for _ in range(2):
        s.next_candidate()
        if (p.masks[p.index] != p.masks[best]).sum() > 20:
            return p, p.index, best
    pytest.fail("the three candidates of this click are alike; pick another click")


def test_propagate_starts_from_the_candidate_shift_m_showed(session, tmp_path):
    from napari_sam.session import read_session, replay

    s = session
    s.mask_boundary = "threshold"  # the preview's masks cut as propagation cuts them
    s.add_point(3, 20, 20)
    p, chosen, best = _choose_other(s)
    shown = p.masks[chosen].copy()
    assert f"candidate {chosen + 1}/3" in s.status
    # the choice stays with this prompt: another slice and back shows it again
    s.go_to_slice(4)
    s.update_preview()
    s.go_to_slice(3)
    (again,) = s.update_preview()
    assert again.index == chosen and np.array_equal(again.mask, shown)

    s.propagate()
    got = s.volume.labels[3] == 1
    assert np.array_equal(got, shown)  # before: the best scoring candidate's mask
    assert not np.array_equal(got, p.masks[best])
    s.commit()
    op = s.log[-1]
    assert op["kind"] == "volume" and op["prompts"]["1"][0]["candidate"] == chosen
    path = s.save_session(tmp_path / "blobs")
    assert np.array_equal(replay(read_session(path), s.emb).labels, s.labels)


def test_a_changed_prompt_or_clear_forgets_the_choice(session):
    s = session
    s.mask_boundary = "threshold"
    s.add_point(3, 20, 20)
    _, chosen, best = _choose_other(s)
    s.add_point(3, 22, 21)  # two points: one mask, no choice to keep
    (p,) = s.update_preview()
    assert p.n_candidates == 1
    s.clear()
    s.add_point(3, 20, 20)  # the same click after Clear: the best scoring again
    (p,) = s.update_preview()
    assert p.index == best
    # cycling back round to the best scoring keeps that index as the choice: the mask shown
    for _ in range(3):
        s.next_candidate()
    assert p.index == best and list(s.chosen_candidates.values()) == [best]
    s.propagate()
    assert s.volume.labels[3].any()


def test_shift_m_without_an_ambiguous_click_says_why(session):
    s = session
    s.add_box(3, 10, 10, 30, 30)
    s.update_preview()
    assert s.next_candidate() is None
    assert "Only one candidate" in s.status and not s.chosen_candidates


def test_a_commit_on_another_image_keeps_this_images_choice(session):
    from stacks import blob_stack

    s = session
    s.mask_boundary = "threshold"
    a = s.image_data
    s.add_point(3, 20, 20)
    p, chosen, _ = _choose_other(s)
    shown = p.masks[chosen].copy()
    s.set_image(blob_stack(seed=1), name="other")  # A's click goes on the shelf
    s.go_to_slice(3)
    s.add_box(3, 34, 34, 54, 54)
    s.update_preview()
    s.commit()  # clears B's prompts and B's choices only
    s.set_image(a, name="blobs")  # A's click comes back, with its choice
    s.go_to_slice(3)
    (again,) = s.update_preview()
    assert again.index == chosen and np.array_equal(again.mask, shown)
    s.propagate()
    assert np.array_equal(s.volume.labels[3] == 1, shown)


def test_refining_a_label_propagates_without_the_clicks_old_choice(session):
    s = session
    s.mask_boundary = "threshold"
    s.add_box(3, 10, 10, 30, 30)
    s.update_preview()
    s.commit()  # label 1
    s.add_point(3, 20, 20)
    _choose_other(s)
    s.refine, s.refine_label = True, 1  # the preview now has label 1's mask as its prompt
    (p,) = s.update_preview()
    assert p.mask_prompt and p.n_candidates == 1
    s.propagate()
    s.commit()
    assert all("candidate" not in rec for rec in s.log[-1]["prompts"]["1"])


def test_refine_keeps_the_choice_of_a_slice_without_the_label(session):
    """'Refine selected label' previews a click with the label's mask only where the label
    is; on a slice without it the click's Shift+M choice still seeds Propagate (found by a
    review: the choice was looked up as a refined one on every slice and dropped)."""
    s = session
    s.mask_boundary = "threshold"
    s.add_box(3, 10, 10, 30, 30)
    s.update_preview()
    s.commit()  # label 1, on slice 3 only
    assert not (s.target_labels()[5] == 1).any()
    s.go_to_slice(5)
    s.add_point(5, 44, 44)
    p, chosen, best = _choose_other(s)
    shown = p.masks[chosen].copy()
    s.go_to_slice(3)
    s.add_point(3, 20, 20)
    s.refine, s.refine_label = True, 1
    (p3,) = s.update_preview()
    assert p3.mask_prompt
    s.propagate(all_objects=True)
    got = s.volume.labels[5] > 0
    assert (got & shown).sum() / (got | shown).sum() >= 0.99
