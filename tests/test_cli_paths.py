"""What a user meets with unusual paths and files in a batch: each case asserts the exit
code, the line the user reads and what was written (or not); one bad file never stops the
batch, and none prints a traceback.
"""

from __future__ import annotations

import errno
import os
import unicodedata

import pytest

from cli_runner import cli, error_line, noise_image


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


FAST = ("--device", "cpu", "-q")
AUTO_FAST = ("--points-per-side", "4", *FAST)


def _failed_line(err: str, name: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"FAILED   {name}")]
    assert len(lines) == 1, err
    return lines[0]


def _stack(path):
    return noise_image(path, (4, 64, 64))


# ------------------------------------------------------------------ 1: a name too long
def test_a_too_long_output_name_fails_that_file_and_the_batch_goes_on(tmp_path, tiny_model,
                                                                       capsys):
    """An input of 245 characters: ``<stem>_labels.tif`` is longer than the 255 bytes a file
    name may have. ``segment`` stopped the whole batch (``napari-sam: error: OSError: [Errno
    36]``) over such an input without prompts, and failed one with prompts with a bare
    OSError of its lock file; now the one with prompts fails, saying why and what to do, the
    other is skipped, and the rest is done."""
    data = tmp_path / "in"
    long_l, long_m = "L" * 245, "M" * 245
    for name in ("a", long_l, long_m):
        _stack(data / f"{name}.tif")
    prompts = tmp_path / "p.csv"
    prompts.write_text(f"file,id,slice,row,col\na.tif,1,1,30,30\n{long_l}.tif,1,1,30,30\n")
    out = tmp_path / "out"
    rc, stdout, err = cli(["segment", data, "-p", prompts, "-o", out, "--model", tiny_model,
                           *FAST], capsys)
    assert rc == 1, err
    line = _failed_line(err, long_l)
    assert "the output name would be longer than the file system allows (255 bytes)" in line
    assert "has 256 bytes" in line and "nothing was written for it" in line
    assert "rename the input to a shorter name (at most 221 bytes before its suffix) or give " \
           "a shorter --suffix" in line
    assert "OSError" not in err + stdout
    assert "Summary: 3 files: 1 done, 1 skipped (1 without prompts), 1 failed" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "a_labels.tif.json"]


@pytest.mark.parametrize("command", ["auto", "embed"])
def test_a_too_long_output_name_in_auto_and_embed(tmp_path, tiny_model, capsys, command):
    """``auto`` and ``embed`` failed that file with a bare ``OSError: [Errno 36] File name
    too long: '.../.napari-sam-work/locks/..._labels.tif.lock'``. ``embed`` writes
    ``<stem>.zarr``, which takes no ``--suffix``: the hint does not offer one."""
    data = tmp_path / "in"
    long_name = "L" * 240
    for name in ("a", long_name):
        _stack(data / f"{name}.tif")
    out = tmp_path / "out"
    extra = AUTO_FAST if command == "auto" else FAST
    rc, stdout, err = cli([command, data, "-o", out, "--model", tiny_model, *extra], capsys)
    assert rc == 1, err
    line = _failed_line(err, long_name)
    assert "longer than the file system allows (255 bytes)" in line
    assert "rename the input to a shorter name" in line
    assert ("--suffix" in line) == (command == "auto")
    assert "Errno" not in err + stdout
    assert "1 done, 0 skipped, 1 failed" in stdout
    done = "a_labels.tif" if command == "auto" else "a.zarr"
    assert sorted(p.name for p in out.iterdir()) == [done, f"{done}.json"]  # no work folder


# ------------------------------------------------------- 2, 5, 9: inputs no reader can open
@pytest.mark.timeout(120)  # it hung for ever
@pytest.mark.parametrize("command", ["auto", "segment"])
def test_a_fifo_among_the_inputs_fails_and_does_not_hang(tmp_path, tiny_model, capsys,
                                                          command):
    """``mkfifo in/pipe.tif``: reading it waited for a writer forever (the batch hung, for
    ``segment`` already while checking the prompts). Now that input fails as not a regular
    file and the batch goes on."""
    data = tmp_path / "in"
    _stack(data / "a.tif")
    os.mkfifo(data / "pipe.tif")
    out = tmp_path / "out"
    args = AUTO_FAST
    if command == "segment":
        prompts = tmp_path / "p.csv"
        prompts.write_text("file,id,slice,row,col\na.tif,1,1,30,30\npipe.tif,1,1,30,30\n")
        args = ("-p", prompts, *FAST)
    rc, stdout, err = cli([command, data, "-o", out, "--model", tiny_model, *args], capsys)
    assert rc == 1, err
    line = _failed_line(err, "pipe.tif")
    assert "not a regular file (a FIFO (named pipe): reading it would wait for a writer)" in line
    assert "save the data as an image file" in line
    assert "1 done, 0 skipped, 1 failed" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "a_labels.tif.json"]


def test_a_dangling_symlink_input_names_its_missing_target(tmp_path, tiny_model, capsys):
    """``in/broken.tif -> nonexistent.tif`` said "Image file not found ... Check the path and
    the working directory", although the file is there: it is a link whose target is
    missing. Now the line says so and names the target."""
    data = tmp_path / "in"
    _stack(data / "a.tif")
    (data / "broken.tif").symlink_to("nonexistent.tif")
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", data, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 1, err
    line = _failed_line(err, "broken.tif")
    assert ("it is a symbolic link whose target 'nonexistent.tif' "
            f"({data / 'nonexistent.tif'}) is missing") in line
    assert "Restore the target" in line and "not found" not in line
    assert "1 done, 0 skipped, 1 failed" in stdout
    assert not (out / "broken_labels.tif.json").exists()


def test_empty_inputs_say_they_are_empty(tmp_path, tiny_model, capsys):
    """0-byte ``.tif``, ``.npy`` and ``.png`` files failed with the readers' own words
    (``header=b''``, ``EOFError``, ``cannot identify image file``)."""
    data = tmp_path / "in"
    _stack(data / "a.tif")
    for name in ("e1.tif", "e2.npy", "e3.png"):
        (data / name).write_bytes(b"")
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", data, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 1, err
    for name in ("e1.tif", "e2.npy", "e3.png"):
        line = _failed_line(err, name)
        assert ("the file is empty (0 bytes). It was not written completely; copy it again"
                in line), line
    assert "EOFError" not in err and "header=" not in err and "cannot identify" not in err
    assert "1 done, 0 skipped, 3 failed" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "a_labels.tif.json"]


# --------------------------------------------------------- 3, 4: -r, links and hidden folders
def _tree(tmp_path):
    """``col/`` with a real subfolder, a link to a folder outside it, a link back to itself,
    a second link to its own subfolder, and hidden folders, each with one image."""
    col, other = tmp_path / "col", tmp_path / "elsewhere"
    for path in (col / "top.tif", col / "real" / "a.tif", other / "b.tif",
                 other / "inner" / "c.tif", col / ".snapshot" / "s.tif", col / ".git" / "g.tif",
                 col / ".Trashes" / "t.tif", col / "real" / ".napari-sam-work" / "w.tif"):
        noise_image(path, (32, 32))
    (col / "linked").symlink_to(other, target_is_directory=True)
    (col / "real" / "loop").symlink_to(col, target_is_directory=True)
    (col / "alias").symlink_to("real", target_is_directory=True)
    (other / "back").symlink_to(col, target_is_directory=True)
    return col


def test_recursive_follows_linked_folders_once_and_skips_hidden_folders(tmp_path):
    """``-r`` skipped symbolic links to folders (os.walk does not follow them) and searched
    hidden folders (``.snapshot``, ``.git``, ``.Trashes``) although hidden files are left out.
    Now links are followed, each folder once (a link back up is no loop; a second link to a
    folder searched already adds nothing), and hidden folders are left out."""
    from napari_sam.batch import collect_inputs_with_folders

    col = _tree(tmp_path)
    found = collect_inputs_with_folders([col], recursive=True)
    assert [(p.relative_to(col).as_posix(), s.as_posix()) for p, s in found] == [
        ("linked/b.tif", "linked"), ("linked/inner/c.tif", "linked/inner"),
        ("real/a.tif", "real"), ("top.tif", ".")]
    # without -r: the folder's own files only
    assert [p.name for p, _ in collect_inputs_with_folders([col])] == ["top.tif"]


def test_recursive_run_writes_the_linked_folders_outputs(tmp_path, tiny_model, capsys):
    """The command line over that tree: every image found is done once, its output in the
    subfolder it was found in (the link's name); nothing from the hidden folders."""
    col = _tree(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", col, "-r", "-o", out, "--model", tiny_model, *AUTO_FAST],
                          capsys)
    assert rc == 0, err
    assert "4 files: 4 done" in stdout
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_labels.tif"))
    assert written == ["linked/b_labels.tif", "linked/inner/c_labels.tif", "real/a_labels.tif",
                       "top_labels.tif"]


def test_docs_say_what_recursive_searches():
    from pathlib import Path

    text = " ".join((Path(__file__).parents[1] / "docs" / "cli.md").read_text().split())
    assert "Hidden files and folders (names that start with `.`" in text
    assert "`--recursive` follows symbolic links to folders, searching each folder once" in text


# ------------------------------------------------------------------ 5: a dangling -o
@pytest.mark.parametrize("below", ["", "sub"])
def test_a_dangling_output_link_names_its_missing_target(tmp_path, tiny_model, capsys, below):
    """``-o link`` (or ``-o link/sub``) where ``link`` points at a folder that does not exist
    said "a part of this path is an existing file, not a folder"."""
    img = noise_image(tmp_path / "a.tif", (32, 32))
    link = tmp_path / "outlink"
    link.symlink_to(tmp_path / "gone")
    out = link / below if below else link
    rc, _, err = cli(["auto", img, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 2
    line = error_line(err)
    assert (f"{link} is a symbolic link whose target {tmp_path / 'gone'} is missing; create "
            "that folder (or point the link at an existing one), or give another output "
            "folder") in line
    assert "existing file" not in line
    assert not (tmp_path / "gone").exists() and link.is_symlink()


# ------------------------------------------------------------------- 6: a full disk, ...
@pytest.mark.parametrize(("code", "filename", "expected"), [
    (errno.ENOSPC, None, "no space left on the device of {out} (writing {out}/a_labels.tif): "
     "nothing was written for it; free space there or write the outputs to another folder "
     "(-o), then rerun"),
    (errno.EROFS, None, "{out} is on a read-only file system (writing {out}/a_labels.tif): "
     "write the outputs to another folder (-o)"),
    (errno.EACCES, "{out}/a_labels.tif.json", "permission denied (writing "
     "{out}/a_labels.tif.json): make {out} writable for you"),
])
def test_os_errors_while_writing_name_the_folder_and_what_to_do(tmp_path, tiny_model, capsys,
                                                                monkeypatch, code, filename,
                                                                expected):
    """A full disk gave ``failed x.tif  OSError: [Errno 28] No space left on device``, with
    no path and no next step (a read-only file system and a refused permission alike)."""
    from napari_sam import io as nio

    def full(*args, **kwargs):
        raise OSError(code, os.strerror(code), *(
            [] if filename is None else [filename.format(out=out)]))

    data = tmp_path / "in"
    _stack(data / "a.tif")
    out = tmp_path / "out"
    monkeypatch.setattr(nio, "write_output_metadata", full)
    rc, stdout, err = cli(["auto", data, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 1, err
    line = _failed_line(err, "a.tif")
    assert expected.format(out=out) in line, line
    assert "Errno" not in line
    assert "0 done, 0 skipped, 1 failed" in stdout
    # its labels were written before the sidecar failed: marked partial, so a rerun makes it
    meta = nio.read_output_metadata(out / "a_labels.tif")
    assert meta is not None and meta["status"] == "partial"


# ------------------------------------------------------------------ 7: Unicode normal forms
def test_prompts_file_names_match_in_any_unicode_normal_form(tmp_path, tiny_model, capsys):
    """``café.tif`` typed in the prompts file (NFC, one character for é) and the file on disk
    as macOS writes it (NFD: e and a combining accent): the prompts were ignored with the
    hint "a misspelling? 'café.tif' -> 'café.tif'"."""
    nfd = unicodedata.normalize("NFD", "café")
    data = tmp_path / "in"
    _stack(data / f"{nfd}.tif")
    prompts = tmp_path / "p.csv"
    prompts.write_text(f"file,id,slice,row,col\n{unicodedata.normalize('NFC', 'café')}.tif,"
                       "1,1,30,30\n", encoding="utf-8")
    out = tmp_path / "out"
    rc, stdout, err = cli(["segment", data, "-p", prompts, "-o", out, "--model", tiny_model,
                           *FAST], capsys)
    assert rc == 0, err
    assert "misspelling" not in err and "match no input" not in err
    assert "1 file: 1 done" in stdout
    assert (out / f"{nfd}_labels.tif").is_file()


# ------------------------------------------------------------------ 8: -q and the demo model
@pytest.mark.parametrize("command", ["auto", "segment", "embed"])
def test_quiet_with_the_demo_model_prints_nothing_on_success(tmp_path, capsys, command):
    """docs/reliability.md: with ``-q`` nothing is printed on success; the demo model's
    note still came (tested for ``export onnx`` only)."""
    from napari_sam.models import registry

    if not registry.where(registry.DEMO_NAME).is_file():
        pytest.skip("the bundled demo model is not installed")
    img = noise_image(tmp_path / "a.tif", (64, 64))
    args = {"auto": ["--points-per-side", "4"], "embed": [],
            "segment": ["-p", tmp_path / "p.csv"]}[command]
    (tmp_path / "p.csv").write_text("id,slice,row,col\n1,0,30,30\n")
    rc, stdout, err = cli([command, img, "-o", tmp_path / "out", *args, *FAST], capsys)
    assert rc == 0, err
    assert err == ""
    assert "bundled demo model" not in stdout
    assert (tmp_path / "out" / ("a.zarr" if command == "embed" else "a_labels.tif")).exists()


def test_an_output_folder_behind_a_locked_folder_is_a_clear_usage_error(tmp_path, monkeypatch):
    """``-o /locked/inner/out`` with ``/locked`` not enterable (mode 700, another user):
    Python 3.11's ``Path.exists`` and ``Path.is_symlink`` raise PermissionError there, and
    the check of ``-o`` ended in ``error: PermissionError: [Errno 13] ...`` (exit 1) instead
    of naming the folder and what to do. (Simulated: the tests may run as root, whom no
    permission stops; os.stat and os.lstat refuse as the kernel would.)"""
    import errno

    from napari_sam.cli.batch_command import check_output_dir
    from napari_sam.cli.errors import CLIError

    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    real_stat, real_lstat = os.stat, os.lstat

    def refuse(real):
        def stat(path, *args, **kwargs):
            if os.fspath(path).startswith(str(locked) + os.sep):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path, *args, **kwargs)
        return stat

    def mkdir(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(os, "stat", refuse(real_stat))
    monkeypatch.setattr(os, "lstat", refuse(real_lstat))
    monkeypatch.setattr(type(tmp_path), "mkdir", mkdir)
    with pytest.raises(CLIError) as err:
        check_output_dir(str(locked / "inner" / "out"))
    assert err.value.code == 2
    text = str(err.value)
    assert f"-o {locked / 'inner' / 'out'}: cannot write there ({locked}: permission denied)" \
        in text, text
    assert "choose a folder you can write to, or fix its permissions" in text
