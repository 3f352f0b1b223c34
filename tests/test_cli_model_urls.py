"""``napari-sam models download NAME --url ...`` as users type it for a mirror they copied:
a plain path (no ``file://``), a file URL with two slashes, a folder, a missing path, and a
file that is no checkpoint. Each asserts the exit code, the line the user reads, that nothing
is cached and that the mirror's file is kept (weights cannot be downloaded here: the files
are made up, so every download that runs fails its checksum)."""

from __future__ import annotations

import pytest

from cli_runner import cli, error_line, md5s


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def _cache(tmp_path) -> list[str]:
    folder = tmp_path / "model-cache"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_plain_path_is_read_as_its_file_url(tmp_path, capsys, monkeypatch):
    """``--url mirror/vit_t.pt``: it said "unsupported URL scheme ''" (exit 1), for a file
    that is there. Now read as its ``file:///`` URL; a truncated copy then fails its
    checksum in our words (was: pooch's "Deleted download for safety", which reads as if the
    mirror's file were deleted), and the mirror's file is kept."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror").mkdir()
    bad = tmp_path / "mirror" / "vit_t.pt"
    bad.write_bytes(b"PK\x03\x04" + bytes(4000))  # the start of a zip, cut short
    before = md5s(bad)
    rc, _, err = cli(["models", "download", "vit_t_lm", "--url", "mirror/vit_t.pt"], capsys)
    line = error_line(err)
    assert rc == 1
    assert line.startswith(f"napari-sam: error: the file downloaded for model 'vit_t_lm' from "
                           f"{bad.as_uri()} does not match its published checksum (its xxh128 "
                           "is "), line
    assert ("the published one 72ec5074774761a6e5c05a08942f981e: a truncated copy, another "
            "model's file or no checkpoint at all); the copy downloaded was discarded and "
            "nothing was saved (the file at the URL is left as it is)") in line
    assert "Deleted download" not in line and "scheme" not in line
    assert md5s(bad) == before and [n for n in _cache(tmp_path) if n.endswith(".pt")] == []


@pytest.mark.parametrize("given, said", [
    ("mirror", "--url mirror is a folder; give the model file in it"),
    ("mirror/nope.pt", "--url mirror/nope.pt is neither a URL (https://..., file:///...) nor "
                       "an existing file"),
    ("file://mirror/vit_t.pt", "--url file://mirror/vit_t.pt: a file URL takes three slashes "
                               "and the absolute path (with two, 'mirror' is read as a host "
                               "name): give --url {uri}"),
])
def test_a_url_that_names_no_file_is_a_usage_error(tmp_path, capsys, monkeypatch, given, said):
    """A folder, a missing path, a file URL with two slashes (``mirror`` read as a host):
    they said "unsupported URL scheme ''" or "No such file or directory: '/vit_t.pt'" (exit
    1); now a usage error naming what to give, before any download."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "vit_t.pt").write_bytes(b"not a model")
    rc, _, err = cli(["models", "download", "vit_t_lm", "--url", given], capsys)
    assert rc == 2
    assert err.splitlines()[0] == "usage: napari-sam models download --help"
    uri = (tmp_path / "mirror" / "vit_t.pt").as_uri()
    assert error_line(err) == "napari-sam: error: " + said.format(uri=uri)
    assert [n for n in _cache(tmp_path) if n.endswith(".pt")] == []


@pytest.mark.parametrize("given, said", [
    ("{uri}", "--model '{uri}' is a URL; --model takes the file itself: --model {path}"),
    ("https://example.com/vit_b.pth", "--model 'https://example.com/vit_b.pth' is a URL; "
     "--model takes a model name or a checkpoint file: download the file first and pass its "
     "path (a mirror of a known model: `napari-sam models download NAME --url URL`, then "
     "--model NAME)"),
    ("mirror", "--model 'mirror' is a folder; give the checkpoint file inside it (.pt or .pth) "
               "or a model name"),
])
def test_a_model_given_as_a_url_or_folder_says_what_to_give(tmp_path, capsys, monkeypatch,
                                                            given, said):
    """``auto --model file:///.../m.pt`` (or https://..., or the folder holding it): it said
    "is neither a known model nor an existing checkpoint file" and listed the names, for a
    file that is there. Now it names what it got and what to give; exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror").mkdir()
    ckpt = tmp_path / "mirror" / "m.pt"
    ckpt.write_bytes(b"not a model")
    img = tmp_path / "a.npy"
    img.write_bytes(b"")
    fill = {"uri": ckpt.as_uri(), "path": str(ckpt)}
    rc, _, err = cli(["auto", "a.npy", "-o", "out", "--model", given.format(**fill),
                      "--device", "cpu"], capsys)
    assert rc == 2 and not (tmp_path / "out").exists()
    assert error_line(err) == "napari-sam: error: " + said.format(**fill)


def test_a_url_for_the_packaged_demo_model_is_said_to_be_unused(tmp_path, capsys,
                                                                 monkeypatch):
    """``models download demo --url mirror/x.pt``: the demo model comes with napari-sam; the
    ``--url`` was ignored without a word (exit 0, the packaged file's path). Now a note says
    it was not used; the mirror's file is not read."""
    from napari_sam.models import registry

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "x.pt").write_bytes(b"not a model")
    rc, out, err = cli(["models", "download", "demo", "--url", "mirror/x.pt"], capsys)
    assert rc == 0 and out.strip() == str(registry.where("demo"))
    assert err.strip() == ("napari-sam: --url not used: the model 'demo' comes with napari-sam "
                           "(nothing to download)")
