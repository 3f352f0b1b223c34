"""The annotation session with a SAM 2.1 model, from plain Python (no napari, no Qt): the
model chosen as a checkpoint file in Meta's format, propagation with SAM 2 memory, commits
that keep other labels, undo, and clear refusals where a SAM 1 model is needed."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate import AnnotationSession, UserError
from napari_sam.annotate.model_choice import checkpoint_family, file_choice
from sam2_checkpoint import save_sam2_checkpoint
from stacks import blob_stack


@pytest.fixture
def sam2_session(tmp_path):
    """``make(object_head)``: a session on a 6-slice 48 px blob stack, a tiny random SAM 2
    checkpoint file chosen, slice 2 shown."""

    def make(object_head: str = "absent"):
        path = save_sam2_checkpoint(tmp_path / f"sam2_{object_head}.pt", object_head)
        s = AnnotationSession()
        s.set_image(blob_stack(z=6, size=48), name="blobs")
        s.set_model(file_choice(path))
        s.go_to_slice(2)
        return s

    return make


def test_a_sam2_checkpoint_file_is_chosen_as_a_sam2_model(tmp_path):
    path = save_sam2_checkpoint(tmp_path / "sam2.pt")
    choice = file_choice(path)
    assert choice.family == "sam2" and choice.label == "file: sam2.pt"
    assert checkpoint_family(tmp_path / "missing.pt") == "sam1"  # loading it says why
    s = AnnotationSession()
    s.set_model(choice)
    assert s.model_family == "sam2" and s.default_propagation() == "sam2"
    assert s.propagation_problem("sam2") is None
    assert "SAM 1 re-prompting needs a SAM 1 model" in s.propagation_problem("sam1")


def test_propagation_with_sam2_memory_commits_into_empty_voxels_and_undoes(sam2_session):
    s = sam2_session("absent")
    s.labels = np.zeros((6, 48, 48), np.uint32)
    s.labels[2, :, :24] = 7  # a label committed before, under half of the slice
    s.labels[4, 10:20, 10:20] = 9
    before = s.labels.copy()
    s.add_point(2, 14, 14)
    (click,) = s.update_preview()  # 2D preview through the Predictor's SAM 2 steps
    assert s.predictor.sam2 is not None and s.predictor.decoder_calls == 1
    assert (click.z, click.n_candidates) == (2, 3) and click.mask.shape == (48, 48)
    # slices 2-5 for clicks, ahead of moves; SAM 2 propagation encodes slices itself
    assert s.embedding_summary() == ("4 of 6 slices embedded for clicks; propagation encodes "
                                     "the slices as it reaches them")
    assert s.status.startswith("point object: score ") and s.status.endswith("Shift+C commits.")
    s.propagate()
    result = s.volume
    assert result is not None and result.object_ids == [1]
    # slices 2, 3, 4 up and 1, 0 down were encoded by the propagation and kept for the next
    assert s.embedding_summary() == ("4 of 6 slices embedded for clicks; 5 of 6 kept for "
                                     "propagating again")
    # the object head says "present" on the prompted slice only: both runs end after two
    # slices found absent
    assert result.stop_reasons == {1: {"up": "absent", "down": "absent"}}
    assert result.slice_range == {1: (2, 2)}
    assert ("(stopped: up: the model found the object absent on 2 slices, down: the model "
            "found the object absent on 2 slices)") in s.status
    assert "with SAM 2 memory" in s.status
    preview = result.labels > 0
    assert preview[2].any() and (preview[2] & (before[2] == 7)).any()  # overlaps label 7
    commit = s.commit()
    (new,) = commit.ids
    assert new not in (7, 9)
    assert np.array_equal(s.labels == new, preview & (before == 0))  # only empty voxels
    keep = before != 0
    assert np.array_equal(s.labels[keep], before[keep])  # other labels byte-identical
    s.undo()
    assert np.array_equal(s.labels, before)
    s.redo()
    assert (s.labels == new).sum() == (preview & (before == 0)).sum()
    assert s.log[-1]["options"] == {"method": "sam2", "stop_after_absent": 2}


def test_sam1_actions_are_refused_with_what_to_do(sam2_session):
    s = sam2_session("present")
    s.add_point(2, 14, 14)
    with pytest.raises(UserError, match="SAM 1 re-prompting needs a SAM 1 model"):
        s.propagate(method="sam1")
    assert s.status.startswith("SAM 1 re-prompting needs a SAM 1 model")
    with pytest.raises(UserError, match="Segment everything needs a SAM 1 model"):
        s.segment_everything()
    assert "Pick a SAM 1 model in 'Model'" in s.status
    s.labels = np.zeros((6, 48, 48), np.uint32)
    s.labels[2, 10:20, 10:20] = 3
    s.refine, s.refine_label = True, 3
    with pytest.raises(UserError, match="Refining a selected label on a slice .* needs a SAM 1"):
        s.update_preview()
    s.refine = False
    s.propagate()  # still usable: SAM 2 memory, the object present on every slice
    assert s.volume.stop_reasons == {1: {"up": "edge", "down": "edge"}}
    assert s.volume.slice_range == {1: (0, 5)}
    features = s.sam2_features()
    assert (len(features), features.hits) == (6, 0)  # every slice encoded once, kept
    first = s.volume.labels.copy()
    s.propagate()  # again (as after a correction): no slice is encoded again
    assert s.sam2_features() is features and features.hits == 6 and features.misses == 6
    assert np.array_equal(s.volume.labels, first)


def test_sam2_propagation_refuses_a_stack_with_channels(tmp_path):
    s = AnnotationSession()
    rgb = np.repeat(blob_stack(z=3, size=32)[..., None], 3, axis=-1)
    s.set_image(rgb, rgb=True, name="rgb")
    s.set_model(file_choice(save_sam2_checkpoint(tmp_path / "sam2.pt")))
    s.add_point(1, 14, 14)
    s.go_to_slice(1)
    with pytest.raises(UserError, match="SAM 2 memory propagation takes grey stacks"):
        s.propagate()


def test_sam2_memory_is_refused_for_a_sam1_model(tiny_sam):
    from napari_sam.annotate import ModelChoice
    from napari_sam.predictor import Predictor

    s = AnnotationSession()
    s.set_image(blob_stack(z=3, size=32), name="blobs")
    choice = ModelChoice("tiny", "tiny")
    s.models.put(choice, "auto", Predictor(tiny_sam, device="cpu"))
    s.set_model(choice)
    s.add_point(1, 14, 14)
    s.go_to_slice(1)
    assert s.default_propagation() == "sam1"
    with pytest.raises(UserError, match="SAM 2 memory propagation needs a SAM 2 model"):
        s.propagate(method="sam2")


def test_sam2_stop_reasons_in_the_status_words():
    from napari_sam.annotate.stack_actions import describe_stops

    assert describe_stops({1: {"up": "absent", "down": "edge"}}, absent_slices=3) == (
        "up: the model found the object absent on 3 slices, down: stack edge")
    both = {1: {"up": "absent", "down": "edge"}, 2: {"up": "absent", "down": "absent"}}
    assert describe_stops(both) == "found absent 3, stack edge 1"


def test_sam2_memory_starts_from_the_candidate_shift_m_showed(sam2_session, monkeypatch):
    import napari_sam.sam2_volume as sv

    s = sam2_session("present")
    s.add_point(2, 14, 14)
    (p,) = s.update_preview()
    best = p.index
    chosen = s.next_candidate()
    assert chosen != best and f"candidate {chosen + 1}/3" in s.status
    given = []
    run = sv.segment_volume_sam2
    monkeypatch.setattr(sv, "segment_volume_sam2",
                        lambda stack, prompts, *a, **k: given.append(prompts) or run(
                            stack, prompts, *a, **k))
    s.propagate()
    assert [sp.candidate for sp in given[0][1]] == [chosen]
    assert s.volume is not None and "Shift+M" not in s.status
    s.commit()
    assert s.log[-1]["prompts"]["1"][0]["candidate"] == chosen


def test_stops_of_a_time_series_are_told_in_frames():
    """*Stack axis is: t*: "later" and "earlier" frames, not "up", "down" and slices."""
    from napari_sam.annotate.stack_actions import describe_stops

    assert describe_stops({1: {"up": "absent", "down": "edge"}}, absent_slices=3, time=True) == (
        "later: the model found the object absent on 3 frames, earlier: end of the series")
    assert describe_stops({1: {"up": "edge"}, 2: {"up": "edge"}}, time=True) == (
        "end of the series 2")
