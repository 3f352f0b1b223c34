"""The autosave records the last *Save session...* of its log (``settings.last_saved_as``),
so that the offer to resume after napari was killed can say how many commits only the
autosave holds (``napari_sam.annotate.ended_sessions``)."""

from __future__ import annotations

from pathlib import Path

from session_claim_helpers import commit_at


def _autosaved(s):
    from napari_sam import session as S

    s.wait_autosave(60)
    return S.read_session(S.session_file_for(s.path), load_labels=False)


def test_the_autosave_names_the_last_save_and_a_loaded_file_is_one(session, tmp_path):
    from napari_sam.annotate.ended_sessions import ended_words

    s = session
    s.path = str(tmp_path / "blobs.tif")
    commit_at(s, 3, 20, 20)
    assert "last_saved_as" not in _autosaved(s).settings
    assert ended_words(_autosaved(s)).endswith(
        ": 1 commit since the last save (none was saved with 'Save session') can be recovered")
    work = s.save_session(tmp_path / "work.json")
    commit_at(s, 2, 44, 44)
    commit_at(s, 4, 44, 44)
    mark = _autosaved(s).settings["last_saved_as"]
    assert (mark["path"], mark["commits"]) == (str(work.absolute()), 1)
    assert ": 2 commits since the last save ('Save session' to work.json at " in ended_words(
        _autosaved(s))
    s.load_session(work)  # the file loaded is the last save: its 1 commit
    commit_at(s, 1, 44, 44)
    mark = _autosaved(s).settings["last_saved_as"]
    assert (Path(mark["path"]).name, mark["commits"]) == ("work.json", 1)


def test_the_count_since_the_last_save_is_right_after_undo(session, tmp_path):
    """Undo moves commits out of the log: after a save of 2 commits and an undo the offer said
    "1 commit since the last save (none was saved ...)"; with 3 commits after that, "2"."""
    from napari_sam.annotate.ended_sessions import ended_words

    s = session
    s.path = str(tmp_path / "blobs.tif")
    commit_at(s, 3, 20, 20)
    commit_at(s, 2, 44, 44)
    s.save_session(tmp_path / "work.json")  # holds 2 commits
    s.undo()
    words = ended_words(_autosaved(s))
    assert ": 0 commits since the last save ('Save session' to work.json at " in words, words
    assert ", 1 commit of it undone) can be recovered" in words, words
    s.redo()  # the same commit back: nothing changed since the save
    words = ended_words(_autosaved(s))
    assert ": 0 commits since the last save ('Save session' to work.json at " in words, words
    assert "undone" not in words, words
    s.undo()
    for z in (4, 5, 1):
        commit_at(s, z, 44, 44)
    words = ended_words(_autosaved(s))  # 4 commits, 3 of them not in work.json
    assert ": 3 commits since the last save ('Save session' to work.json at " in words, words
    assert ", 1 commit of it undone) can be recovered" in words, words
    s.load_session(s.save_session(tmp_path / "again.json"))  # its 4 commits are the save's
    commit_at(s, 2, 20, 20)
    words = ended_words(_autosaved(s))
    assert ": 1 commit since the last save ('Save session' to again.json at " in words, words
    assert "undone" not in words, words


def test_a_loaded_file_without_a_saved_time_is_named_without_one(session, tmp_path):
    """A session file with no ``saved`` (written by hand, or by another tool) loaded, then
    napari killed: the offer said "('Save session' to work.json at None)"."""
    import json

    from napari_sam.annotate.ended_sessions import ended_words

    s = session
    s.path = str(tmp_path / "blobs.tif")
    commit_at(s, 3, 20, 20)
    work = s.save_session(tmp_path / "work.json")
    record = json.loads(work.read_text())
    del record["saved"]
    work.write_text(json.dumps(record))
    s.load_session(work)
    commit_at(s, 2, 44, 44)
    words = ended_words(_autosaved(s))
    assert words.endswith(": 1 commit since the last save ('Save session' to work.json) can "
                          "be recovered"), words
