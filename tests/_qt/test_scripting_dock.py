"""A script drives the dock the way docs/scripting.md shows: open it from the menu, wait for
its jobs with ``widget.wait()`` (real worker threads), click, propagate, commit (a helper
walk-through, session 31: nothing documented how a script waits; a propagate called while the
preload ran was refused, and the helper polled private state)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sam_qt_helpers import blob_stack


@pytest.fixture
def scripted(make_widget, demo_available):
    viewer, widget = make_widget(blob_stack(z=6), sync=False, name="blobs")  # preload on
    return viewer, widget


def _click_the_disc(widget) -> None:
    """After the preload: show slice 3 and click the disc at (20, 20), waiting after each
    action as docs/scripting.md says (showing a slice or adding a point embeds slices)."""
    c = widget.controller
    widget.wait()
    c.go_to_slice(3)
    widget.wait()
    c.add_point(3, 20, 20)
    widget.wait()


def _disc(z: int = 6) -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    return np.broadcast_to((yy - 20) ** 2 + (xx - 20) ** 2 < 64, (z, 64, 64))


def test_a_script_waits_for_the_preload_then_propagates_and_commits(scripted):
    viewer, widget = scripted
    c = widget.controller
    widget.wait()  # the model's loading and the shown slice's embeddings, in their threads
    assert c.job is None and c.emb is not None
    _click_the_disc(widget)
    c.propagate()
    assert c.job is not None and c.job.running  # a real worker thread
    widget.wait()
    assert c.volume is not None and c.volume.slice_range[1] == (0, 5)
    c.commit()
    widget.wait()
    labels = np.asarray(viewer.layers["segmentation"].data)
    got = labels == 1
    assert (got & _disc()).sum() / (got | _disc()).sum() >= 0.8


def test_a_script_adds_a_box_and_commits_it(scripted):
    """docs/scripting.md lists ``add_box`` among the actions: in the dock it went into an
    array nothing read (no box in 'SAM boxes', no preview; session 32's walk-through)."""
    viewer, widget = scripted
    c = widget.controller
    widget.wait()
    c.go_to_slice(3)
    widget.wait()
    c.add_box(3, 30, 30, 10, 10)  # corners in either order
    widget.wait()
    assert len(viewer.layers["SAM boxes"].data) == 1
    assert np.allclose(c.prompt_arrays()[2], [[3, 10, 10, 30, 30]])
    assert c.previews, c.status
    c.commit()
    widget.wait()
    got = np.asarray(viewer.layers["segmentation"].data)[3] == 1
    disc = _disc()[3]
    assert (got & disc).sum() / (got | disc).sum() >= 0.8


def test_wait_raises_when_a_job_failed_and_the_dock_stays_usable(scripted, monkeypatch):
    import napari_sam.volume as volume

    viewer, widget = scripted
    c = widget.controller
    widget.wait()
    real = volume.segment_volume

    def broken(*args, **kwargs):
        raise ValueError("boom: the propagation broke")

    monkeypatch.setattr(volume, "segment_volume", broken)
    _click_the_disc(widget)
    c.propagate()
    with pytest.raises(RuntimeError, match="Propagating through the stack' failed: .*boom"):
        widget.wait()
    widget.wait()  # reported once
    monkeypatch.setattr(volume, "segment_volume", real)
    c.propagate()
    widget.wait()
    assert c.volume is not None and c.volume.slice_range[1] == (0, 5)


def test_wait_times_out_while_a_job_runs_and_waits_again(scripted, monkeypatch):
    import napari_sam.volume as volume

    viewer, widget = scripted
    c = widget.controller
    widget.wait()
    release = threading.Event()
    real = volume.segment_volume

    def held(*args, **kwargs):
        assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(volume, "segment_volume", held)
    _click_the_disc(widget)
    c.propagate()
    with pytest.raises(TimeoutError, match="still runs after 0.3 s"):
        widget.wait(timeout=0.3)
    assert c.job is not None and c.job.running
    release.set()
    widget.wait()
    assert c.volume is not None


def test_wait_names_the_failure_even_after_a_later_job_succeeded(scripted, monkeypatch, qtbot):
    """A failed job, then one that succeeded, then ``wait()``: it raises with the failed
    job's status line, not the later one (the reviewer's catch: "'Propagating ...' failed:
    Propagated 1 object ...")."""
    import napari_sam.volume as volume

    viewer, widget = scripted
    c = widget.controller
    widget.wait()
    _click_the_disc(widget)
    real = volume.segment_volume

    def broken(*args, **kwargs):
        raise ValueError("boom: the propagation broke")

    monkeypatch.setattr(volume, "segment_volume", broken)
    c.propagate()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    monkeypatch.setattr(volume, "segment_volume", real)
    c.propagate()
    with pytest.raises(RuntimeError) as err:
        widget.wait()
    assert "boom" in str(err.value) and "Propagated" not in str(err.value)
    assert c.volume is not None and c.status.startswith("Propagated 1 object")


def test_a_point_on_another_slice_shows_it_and_a_missing_slice_is_refused(scripted):
    """A script's point on a slice not shown was kept unpreviewed ("Add a point ..."), and
    ``go_to_slice(12)`` on a 6-slice stack showed slice 5 quietly (session 33)."""
    from napari_sam.annotate import UserError

    viewer, widget = scripted
    c = widget.controller
    widget.wait()
    assert c.current_z() != 4
    c.add_point(4, 20, 20)
    widget.wait()
    assert c.current_z() == 4 and [p.z for p in c.previews] == [4], c.status
    with pytest.raises(UserError, match=r"Slice 12 is not a slice of 'blobs': it has slices "
                                        r"0-5\."):
        c.go_to_slice(12)
    with pytest.raises(UserError, match="Slice 5.5 is not a slice"):
        c.add_point(5.5, 20, 20)
    assert c.current_z() == 4 and len(viewer.layers["SAM points"].data) == 1
