"""The autosaved session of an image in a folder one cannot write (kept under the cache
folder, keyed by the image's path) is found however the path was written: a script's
``viewer.open("../ro/blobs.tif")`` and File > Open's clean path are one image (session 41's
walk-through of paths)."""

from __future__ import annotations


def test_a_cache_folder_session_is_found_from_a_path_with_dot_dot(session, tmp_path,
                                                                  monkeypatch):
    from napari_sam.annotate import session_places

    s = session
    image = tmp_path / "ro" / "blobs.tif"
    image.parent.mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(session_places, "folder_writable", lambda folder: False)
    monkeypatch.chdir(tmp_path / "work")
    s.path = "../ro/./blobs.tif"  # as a script opened it
    s.add_point(3, 20, 20)
    s.update_preview()
    s.commit()
    s.path = str(image)  # as File > Open gives it, later
    found = s.saved_session_path()
    assert found == session_places.fallback_session_file(image) and found.is_file()
