"""A napari killed while it writes a session (the autosave after a commit, or *Save
session...*: ``kill -9``, the OOM killer, a power cut) leaves the previous session whole, and
beside it the files the write had made: a half-written label TIFF or JSON under a hidden
temporary name, or a whole TIFF whose JSON was never written. Resuming loads the previous
session, never one of them; the next write of that session file removes them (before, they
stayed for good: with large labels, up to two hidden copies of 1 GB per crash)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from session_claim_helpers import commit_at, on_image
from stacks import blob_session

OLD = time.time() - 600  # the crash was ten minutes ago


def _left_by_a_kill(folder, labels):
    """The files a write of ``blobs.tif.sam-session.json`` killed half-way leaves, as a crash
    leaves them (old), and two that must stay: a user's TIFF and a write under way."""
    from napari_sam import io as nio

    whole = folder / "blobs.tif.sam-session.labels-0123456789ab.tif"  # JSON never written
    nio.write_labels(whole, labels, axes="ZYX", overwrite=True)
    half = folder / ".blobs.tif.sam-session.labels-ba9876543210.tif.00aa11bb22cc.tmp"
    half.write_bytes(whole.read_bytes()[:700])  # killed while written
    json_tmp = folder / ".blobs.tif.sam-session.json.33dd44ee55ff.tmp"
    json_tmp.write_text('{"format": "napari-sam-session", "version": 1, "ima')
    part = folder / "blobs.tif.sam-session.kept-20261207-025341.labels-0123456789ab.tif.part"
    part.write_bytes(whole.read_bytes()[:300])  # killed while the session was kept aside
    stay = [folder / "blobs.tif.sam-session.labels-manual.tif",  # the user's
            folder / ".blobs.tif.sam-session.labels-cccccccccccc.tif.dddddddddddd.tmp"]
    stay[0].write_bytes(whole.read_bytes())
    for p in (whole, half, json_tmp, part, stay[0]):
        os.utime(p, (OLD, OLD))
    stay[1].write_bytes(b"II*\x00")  # written just now: another writer's, under way
    return [whole, half, json_tmp, part], stay


@pytest.mark.filterwarnings("ignore:Its model .tiny. is no model name")
def test_what_a_killed_session_write_left_is_not_loaded_and_goes_at_the_next_write(
        tiny_sam, tmp_path, monkeypatch):
    from napari_sam import session as S
    from napari_sam import session_leftovers

    image = tmp_path / "blobs.tif"
    s = on_image(blob_session(tiny_sam), image)
    commit_at(s, 3, 20, 20)
    s.wait_autosave(60)
    s.release_session_file()  # (the kernel lets a killed process's lock go)
    sidecar = tmp_path / "blobs.tif.sam-session.json"
    first = S.read_session(sidecar)
    saved = first.labels
    assert sorted(np.unique(saved).tolist()) == [0, 1]
    gone, stay = _left_by_a_kill(tmp_path, saved + 7 * (saved == 0))

    monkeypatch.setattr(session_leftovers, "_SWEPT", set())  # napari started again:
    again = on_image(blob_session(tiny_sam), image)  # its first write sweeps
    offered = again.offer_resume()
    assert offered is not None and len(offered.operations) == 1
    resumed = again.resume()
    assert np.array_equal(resumed.labels, saved)  # the session written whole, no leftover
    assert all(p.exists() for p in gone)
    commit_at(again, 3, 44, 44)
    again.wait_autosave(60)
    assert [p.name for p in gone if p.exists()] == []
    assert all(p.exists() for p in stay)
    back = S.read_session(sidecar)
    assert len(back.operations) == 2 and sorted(np.unique(back.labels).tolist()) == [0, 1, 2]
    named = json.loads(sidecar.read_text())["labels"]["path"]
    assert {p.name for p in tmp_path.glob("blobs.tif.sam-session.labels-*.tif")} == {
        named, "blobs.tif.sam-session.labels-manual.tif"}


def test_the_resume_offer_gives_the_time_of_the_last_save_on_the_users_clock(
        tiny_sam, tmp_path, monkeypatch):
    """The offer after a crash said "saved 2026-12-07T02:53:41+00:00" (UTC, as the file
    records it): in Berlin, a session autosaved a minute before the crash read as saved an
    hour before it, so the user could not tell whether the last commits were in."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is needed to set the time zone (not on Windows)")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        image = tmp_path / "blobs.tif"
        s = on_image(blob_session(tiny_sam), image)
        commit_at(s, 3, 20, 20)
        s.wait_autosave(60)
        s.release_session_file()
        sidecar = tmp_path / "blobs.tif.sam-session.json"
        record = json.loads(sidecar.read_text())
        record["saved"] = "2026-12-07T02:53:41+00:00"
        sidecar.write_text(json.dumps(record))
        again = on_image(blob_session(tiny_sam), image)
        said = []
        again.notify_resume = lambda path, offer: said.append(offer)
        assert again.offer_resume() is not None
        assert said == ["A saved session exists for this image (1 commit, label 1, saved "
                        "2026-12-07 03:53:41): resume it?"]
    finally:
        monkeypatch.undo()
        time.tzset()
