"""An object propagated with slices without a mask between its prompts (each side's stop rule
fired before they met) is said so: the status line and the trace name the hole instead of
one range over it (a new user's walk through the dock, session 26: "over slices 0-15" while
slices 7-9 were empty)."""

from __future__ import annotations

from napari_sam.trace import describe_slices, slice_runs


def test_slice_runs_and_their_words():
    assert slice_runs([]) == []
    assert slice_runs([5, 3, 4, 9, 10, 12]) == [(3, 5), (9, 10), (12, 12)]
    assert describe_slices([0, 1, 2]) == "0-2"
    assert describe_slices([0, 1, 2, 6, 7]) == "0-2 and 6-7"
    assert describe_slices([0, 2, 4]) == "0, 2 and 4"
    assert describe_slices(range(7, 10)) == "7-9"


def test_a_hole_between_prompts_is_named(session, monkeypatch):
    import napari_sam.volume as V

    real = V.segment_volume

    def with_a_hole(*args, **kwargs):
        result = real(*args, **kwargs)
        result.labels[2][result.labels[2] == 1] = 0  # object 1 lost on slice 2
        return result

    monkeypatch.setattr(V, "segment_volume", with_a_hole)
    s = session
    s.add_point(1, 20, 20)
    s.add_point(4, 20, 20)
    s.propagate(all_objects=True)
    (obj,) = s.trace["objects"]
    runs = slice_runs(obj["slices"])
    assert 2 not in obj["slices"] and len(runs) > 1
    for a, b in zip(runs, runs[1:]):
        gap = describe_slices(range(a[1] + 1, b[0]))
        assert f"object 1 has no mask on slice{'s' * ('-' in gap)} {gap}" in s.status, s.status
    assert "click the object there and Propagate again" in s.status
    assert f"over slices {describe_slices(obj['slices'])} (" in s.status  # two runs or more
