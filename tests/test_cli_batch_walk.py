"""A new user's walk through the batch command (auto, segment) over a mixed folder: links,
channels, concurrent runs, progress bars and the documented prompts example. Each test
asserts what the user sees: exit codes, lines and which files get outputs."""

from __future__ import annotations

import pytest

from cli_runner import cli, noise_image


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


FAST = ("--device", "cpu", "-q")
AUTO_FAST = ("--points-per-side", "4", *FAST)


def _linked_folder(tmp_path):
    """``lnk/a.tif``, ``lnk/b_link.tif -> a.tif`` and ``lnk/c_copy.tif`` (a copy)."""
    lnk = tmp_path / "lnk"
    noise_image(lnk / "a.tif", (48, 48))
    (lnk / "b_link.tif").symlink_to("a.tif")
    (lnk / "c_copy.tif").write_bytes((lnk / "a.tif").read_bytes())
    return lnk


def _outputs(out):
    return sorted(p.name for p in out.glob("*_labels.tif"))


# ------------------------------------------------------------------ 1: a linked TIFF
def test_a_link_of_another_name_is_an_input_of_its_own(tmp_path, tiny_model, capsys):
    """``b_link.tif -> a.tif`` was dropped without a word, in a folder and when named (inputs
    were de-duplicated by their real path): the summary listed a.tif and c_copy.tif only.
    Now the link is segmented under its own name; a rerun skips all three (resume), and a
    file reached twice under one name (the folder and the file named) is still one input."""
    lnk = _linked_folder(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", lnk, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 0, err
    assert "3 file(s): 3 done" in stdout
    assert "b_link.tif" in stdout
    assert _outputs(out) == ["a_labels.tif", "b_link_labels.tif", "c_copy_labels.tif"]
    rc, stdout, err = cli(["auto", lnk, lnk / "a.tif", "-o", out, "--model", tiny_model,
                           *AUTO_FAST], capsys)
    assert rc == 0, err
    assert "3 file(s): 0 done, 3 skipped" in stdout

    named = tmp_path / "named"
    rc, stdout, err = cli(["auto", lnk / "a.tif", lnk / "b_link.tif", "-o", named, "--model",
                           tiny_model, *AUTO_FAST], capsys)
    assert rc == 0, err
    assert "2 file(s): 2 done" in stdout
    assert _outputs(named) == ["a_labels.tif", "b_link_labels.tif"]


def test_prompts_naming_a_link_apply_to_the_link(tmp_path, tiny_model, capsys):
    """A prompts CSV whose rows name ``b_link.tif`` failed with "match none of the 2
    input(s)". Now they are the link's prompts: its output is written, a.tif and c_copy.tif
    (no prompts) are skipped."""
    lnk = _linked_folder(tmp_path)
    csv = tmp_path / "lk.csv"
    csv.write_text("file,id,slice,row,col\nb_link.tif,1,0,24,24\n")
    out = tmp_path / "seg"
    rc, stdout, err = cli(["segment", lnk, "-p", csv, "-o", out, "--model", tiny_model, *FAST],
                          capsys)
    assert rc == 0, err
    assert "match none" not in err
    assert "3 file(s): 1 done, 2 skipped" in stdout
    assert _outputs(out) == ["b_link_labels.tif"]

