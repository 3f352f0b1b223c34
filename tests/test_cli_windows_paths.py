"""Paths and files as a user sharing folders with Windows (or macOS) colleagues meets them:
``~`` in quoted paths, backslashes in a prompts file's ``file`` column, names that differ
only in case written into one folder, a prompts file saved as UTF-16. Each case asserts the
exit code, the line the user reads and what was written where.
"""

from __future__ import annotations

import pytest

from cli_runner import cli, error_line, noise_image


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


FAST = ("--device", "cpu", "-q")


def _prompted_ids(sidecar) -> list[int]:
    """The objects of an output's sidecar: those in the labels and those given prompts but
    not kept (its ``lost``)."""
    import json

    meta = json.loads(sidecar.read_text())
    return sorted({o["id"] for o in meta["objects"]} | {int(k) for k in meta["extra"]["lost"]})


# ------------------------------------------------------------------ 1: "~" quoted
def test_a_quoted_tilde_is_the_home_folder_in_every_path_option(tmp_path, tiny_model, capsys,
                                                                 monkeypatch):
    """``auto "~/data/*.tif" -o "~/out"``: a quoted ``~`` reaches the command unexpanded (no
    shell expands it). The input glob was expanded, but ``-o`` made a folder named ``~`` in
    the current folder (the summary read ``~/out/x_labels.tif``, which is not there), and
    ``--prompts``, ``--embeddings`` and ``report`` said "does not exist"."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    noise_image(home / "data" / "x.tif", (3, 64, 64))
    (home / "p.csv").write_text("file,id,slice,row,col\nx.tif,1,1,30,30\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    model = ("--model", tiny_model)
    rc, _, err = cli(["embed", "~/data/*.tif", "-o", "~/emb", *model, *FAST], capsys)
    assert rc == 0, err
    rc, stdout, err = cli(["segment", "~/data/x.tif", "-o", "~/seg", "-p", "~/p.csv",
                           "--embeddings", "~/emb", *model, *FAST], capsys)
    assert rc == 0, err
    assert f"{home / 'seg' / 'x_labels.tif'}" in stdout
    rc, stdout, err = cli(["report", "~/seg", "-q"], capsys)
    assert rc == 0, err
    assert (home / "emb" / "x.zarr").is_dir()
    assert (home / "seg" / "x_labels.tif").is_file()
    assert (home / "seg" / "x_labels.tif.trace.png").is_file()
    rc, _, err = cli(["sample", "nuclei-2d", "-o", "~/s", "--shape", "64,64", "-q"], capsys)
    assert rc == 0, err
    assert (home / "s" / "nuclei-2d_seed10000.tif").is_file()
    assert list(cwd.iterdir()) == []  # no folder named "~"


@pytest.mark.parametrize("argv", [["train", "imgs/", "gt/", "-o", "~/m.pt"],
                                  ["export", "onnx", "demo", "-o", "~/onnx"]])
def test_train_and_export_take_a_quoted_tilde_as_the_home_folder(argv, tmp_path, monkeypatch):
    """``train ... -o "~/m.pt"`` wrote the checkpoint into a folder named ``~`` of the
    current folder; ``export onnx`` expanded it already (now where the others do)."""
    from napari_sam.cli.app import build_parser

    monkeypatch.setenv("HOME", str(tmp_path))
    args = build_parser().parse_args(argv)
    assert args.output == str(tmp_path / argv[-1][2:])


# ------------------------------------------------------------------ 2: backslashes in 'file'
def test_backslash_paths_in_the_file_column_name_the_inputs_below_the_folder(tmp_path,
                                                                              tiny_model, capsys):
    """A prompts file written on Windows (CRLF, a BOM) names ``pos1\\img.tif`` and
    ``pos2\\img.tif`` for ``segment col/ -r``: both were "match none of the 2 inputs"
    (exit 2); each input now gets its own rows. An absolute Windows path still names no
    file here, and the error says so and what to write."""
    for pos in ("pos1", "pos2"):
        noise_image(tmp_path / "col" / pos / "img.tif", (3, 64, 64))
    prompts = tmp_path / "p.csv"
    prompts.write_bytes("file,id,slice,row,col\r\npos1\\img.tif,1,1,30,30\r\n"
                        "pos2\\img.tif,1,1,30,30\r\npos2\\img.tif,2,2,10,10\r\n"
                        .encode("utf-8-sig"))
    out = tmp_path / "out"
    rc, stdout, err = cli(["segment", tmp_path / "col", "-r", "-p", prompts, "-o", out,
                           "--model", tiny_model, *FAST], capsys)
    assert rc == 0, err
    assert "match no input" not in err
    assert [_prompted_ids(out / pos / "img_labels.tif.json") for pos in ("pos1", "pos2")] \
        == [[1], [1, 2]]
    prompts.write_bytes(b"file,id,slice,row,col\r\nC:\\Users\\me\\col\\pos1\\img.tif,1,1,30,30\r\n")
    rc, _, err = cli(["segment", tmp_path / "col", "-r", "-p", prompts, "-o", tmp_path / "o2",
                      "--model", tiny_model, *FAST], capsys)
    assert rc == 2
    assert ("'C:/Users/me/col/pos1/img.tif' is a Windows path, which names no file here: "
            "write the file's name ('img.tif'), or its path below the input folder"
            in error_line(err))


# ------------------------------------------------------------------ 3: a.tif and A.TIF
def _two_cases(folder):
    noise_image(folder / "a.tif", (64, 64), seed=1)
    noise_image(folder / "A.TIF", (64, 64), seed=2)
    return folder


def test_names_that_differ_only_in_case_stop_where_the_file_system_folds_them(
        tmp_path, tiny_model, capsys, monkeypatch):
    """``auto data/ -o out/`` over ``a.tif`` and ``A.TIF`` on a file system that takes
    ``a_labels.tif`` and ``A_labels.tif`` as one file (Windows, macOS, an SMB share): the
    second output replaced the first, and both said done. Now exit 2 before any work, naming
    both; nothing written. (Linux's file systems fold no case; the probe is set here.)"""
    from napari_sam.batch import jobs

    monkeypatch.setattr(jobs, "folds_names", lambda folder: True, raising=False)
    data = _two_cases(tmp_path / "data")
    out = tmp_path / "out"
    rc, _, err = cli(["auto", data, "-o", out, "--model", tiny_model,
                      "--points-per-side", "4", *FAST], capsys)
    assert rc == 2
    line = error_line(err)
    assert "several inputs would write the same output" in line
    assert (f"{data / 'A.TIF'} -> {out / 'A_labels.tif'} and {data / 'a.tif'} -> "
            f"{out / 'a_labels.tif'}, one file where names that differ only in case are one"
            in line), line
    assert not out.exists()


def test_names_that_differ_only_in_case_are_two_outputs_where_case_counts(
        tmp_path, tiny_model, capsys):
    """On a case-sensitive file system (this one) both are segmented, each to its own file."""
    from napari_sam.batch.output_names import folds_names

    (tmp_path / "empty").mkdir()
    assert folds_names(tmp_path / "empty" / "new") is False  # asked with a probe file
    assert list((tmp_path / "empty").iterdir()) == []
    (tmp_path / "empty").rmdir()
    data = _two_cases(tmp_path / "data")
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", data, "-o", out, "--model", tiny_model,
                           "--points-per-side", "4", *FAST], capsys)
    assert rc == 0, err
    assert "2 files: 2 done" in stdout
    assert sorted(p.name for p in out.glob("*_labels.tif")) == ["A_labels.tif", "a_labels.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]  # no probe left


# ------------------------------------------------------------------ 4: UTF-16 prompts
@pytest.mark.parametrize(("bom", "name"), [("\ufeff", "细胞"), ("", "细胞"), ("", "一号")])
@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_a_utf16_prompts_file_is_read(tmp_path, tiny_model, capsys, encoding, bom, name):
    """A prompts file saved as UTF-16 (Excel's "Unicode Text", PowerShell 5's ``Out-File``)
    with a file name in Chinese. With its BOM it was refused as "not UTF-8 text (byte 0xff on
    line 1) ... iconv -f latin1", advice that garbles it; without one (``iconv -t UTF-16LE``,
    some Windows tools) read as UTF-8, "unknown columns ['\\x00c\\x00o\\x00l\\x00', ...]". The
    BOM, or the zeros of its ASCII header in every other byte, say what it is: read as it is,
    also where a character has a zero byte of its own (一, U+4E00: it was refused as "not
    UTF-8 text ... iconv -f latin1")."""
    noise_image(tmp_path / "data" / f"{name}.tif", (3, 64, 64))
    prompts = tmp_path / "p.csv"
    prompts.write_bytes(f"{bom}file,id,slice,row,col\r\n{name}.tif,1,1,30,30\r\n"
                        f"{name}.tif,2,2,10,10\r\n".encode(encoding))
    out = tmp_path / "out"
    rc, stdout, err = cli(["segment", tmp_path / "data", "-p", prompts, "-o", out,
                           "--model", tiny_model, *FAST], capsys)
    assert rc == 0, err
    assert "1 file: 1 done" in stdout
    assert _prompted_ids(out / f"{name}_labels.tif.json") == [1, 2]


@pytest.mark.parametrize(("tail", "reason"), [(b"\x00", "truncated data"),
                                              (b"\x00\xdc", "illegal encoding")])
def test_a_damaged_utf16_prompts_file_is_not_called_not_utf8(tmp_path, tiny_model, capsys,
                                                             tail, reason):
    """A UTF-16 prompts file cut off mid-character, or with a lone surrogate: it said "not
    UTF-8 text (byte 0xff on line 1) ... iconv -f latin1 -t utf-8", advice that garbles a
    UTF-16 file. It names UTF-16, where and to save it again."""
    noise_image(tmp_path / "data" / "a.tif", (3, 64, 64))
    prompts = tmp_path / "p.csv"
    good = "\ufefffile,id,slice,row,col\r\na.tif,1,1,30,30\r\n".encode("utf-16-le")
    prompts.write_bytes(good + tail)
    rc, _, err = cli(["segment", tmp_path / "data", "-p", prompts, "-o", tmp_path / "out",
                      "--model", tiny_model, *FAST], capsys)
    assert rc == 2
    assert error_line(err) == (
        f"napari-sam: error: prompts file {str(prompts)!r} is UTF-16 text that cannot be "
        f"decoded ({reason} at byte {len(good)}, line 3: a truncated or damaged file?); save "
        "it again, as UTF-8 (Excel: \"CSV UTF-8\") or UTF-16")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 5: Excel's CSV habits
def _segment_a_tif(tmp_path, tiny_model, capsys, out: str, prompts: bytes):
    """``(rc, stderr)`` of ``segment`` on ``data/a.tif`` (3 x 64 x 64 noise, made once) with
    the prompts file ``p.csv`` holding ``prompts``, into ``tmp_path / out``."""
    image = tmp_path / "data" / "a.tif"
    if not image.exists():
        noise_image(image, (3, 64, 64))
    (tmp_path / "p.csv").write_bytes(prompts)
    rc, _, err = cli(["segment", tmp_path / "data", "-p", tmp_path / "p.csv", "-o",
                      tmp_path / out, "--model", tiny_model, *FAST], capsys)
    return rc, err


def test_excels_empty_columns_right_of_the_table_are_ignored(tmp_path, tiny_model, capsys):
    """Excel writes the empty (once formatted) columns right of the table: a header
    ``file,id,slice,row,col,,`` (or a column named by a space) and rows ending ``,,``, and
    empty rows ``,,,,,,``. It was refused: "unknown column ['']". A value under a column
    without a name is still refused, naming the line and the column."""
    rc, err = _segment_a_tif(tmp_path, tiny_model, capsys, "out",
                             b"\xef\xbb\xbffile,id,slice,row,col, ,\r\na.tif,1,1,30,30,,\r\n"
                             b"a.tif,2,2,10,10,,\r\n,,,,,,\r\n")
    assert rc == 0, err
    assert _prompted_ids(tmp_path / "out" / "a_labels.tif.json") == [1, 2]
    rc, err = _segment_a_tif(tmp_path, tiny_model, capsys, "o2",
                             b"file,id,slice,row,col,,\r\na.tif,1,1,30,30,,x\r\n")
    assert rc == 2
    assert ("p.csv, line 2: column 7 has no name in the first line but holds 'x'; name that "
            "column (file, id, slice, row, col, ...) or delete it" in error_line(err))


def test_excels_sep_line_before_the_header_is_skipped(tmp_path, tiny_model, capsys):
    """Excel's ``sep=,`` first line (it writes it for other locales, and it makes Excel open
    the file right): it was read as the header, "unknown column ['sep=']". Now skipped; a
    ``sep=;`` file gets the semicolon message, naming what to do."""
    rc, err = _segment_a_tif(tmp_path, tiny_model, capsys, "out",
                             b"sep=,\r\nfile,id,slice,row,col\r\na.tif,1,1,30,30\r\n"
                             b"a.tif,2,2,10,10\r\n")
    assert rc == 0, err
    assert _prompted_ids(tmp_path / "out" / "a_labels.tif.json") == [1, 2]
    rc, err = _segment_a_tif(tmp_path, tiny_model, capsys, "o2",
                             b"sep=;\r\nfile;id;slice;row;col\r\na.tif;1;1;30;30\r\n")
    assert rc == 2 and "is separated by semicolons (';'), but prompts files must be " \
        "comma-separated" in error_line(err), err


def test_a_quoted_decimal_comma_is_named(tmp_path, tiny_model, capsys):
    """``"94,5"`` (a decimal comma kept in a comma-separated file by quotes): the error said
    only "row must be a number, got '94,5'"; it now says what to write."""
    noise_image(tmp_path / "data" / "a.tif", (3, 64, 64))
    prompts = tmp_path / "p.csv"
    prompts.write_text('file,id,slice,row,col\na.tif,1,1,"30,5",30\n')
    rc, _, err = cli(["segment", tmp_path / "data", "-p", prompts, "-o", tmp_path / "out",
                      "--model", tiny_model, *FAST], capsys)
    assert rc == 2
    assert ("p.csv, line 2: row must be a number, got '30,5' (a decimal comma? write '30.5': "
            "prompts files use '.' for decimals)" in error_line(err))


# ------------------------------------------------------------------ 6: "*.tif" and X.TIF
def test_a_pattern_that_misses_files_by_case_says_so(tmp_path, tiny_model, capsys,
                                                     monkeypatch):
    """``auto "up/*.tif"`` over ``X1.TIF`` and ``X2.TIF`` (a Windows camera's names): it said
    only "'up/*.tif' matches no files", which on Windows it does match. Beside ``a.tif`` the
    two were left out without a word. Now the error (and a note) names them and what to
    give; ``train`` and ``napari_sam.train`` say the same."""
    monkeypatch.chdir(tmp_path)
    for name in ("X1.TIF", "X2.TIF"):
        noise_image(tmp_path / "up" / name, (64, 64))
    run = ("-o", "out", "--model", tiny_model, "--points-per-side", "4", "--device", "cpu")
    rc, _, err = cli(["auto", "up/*.tif", *run, "-q"], capsys)
    assert rc == 2
    assert error_line(err) == (
        "napari-sam: error: 'up/*.tif' matches no files; 2 files match it but for upper/lower "
        "case (e.g. up/X1.TIF): patterns compare letters exactly here; give \"up/*.TIF\" or "
        "the folder up/ (a folder takes any case)")
    noise_image(tmp_path / "up" / "a.tif", (64, 64))
    rc, stdout, err = cli(["auto", "up/*.tif", *run], capsys)
    assert rc == 0 and "1 file: 1 done" in stdout, err
    assert ("napari-sam: note: 'up/*.tif': 2 files match it but for upper/lower case and are "
            "left out (e.g. up/X1.TIF): patterns compare letters exactly here; give "
            "\"up/*.tif\" \"up/*.TIF\" or the folder up/") in err
    rc, stdout, err = cli(["auto", "up/*.tif", "up/*.TIF", *run], capsys)
    assert rc == 0 and "3 files: 2 done" in stdout and "upper/lower" not in err, err
    rc, _, err = cli(["train", "up/*.tiff", "up/", "-o", "m.pt", "--device", "cpu"], capsys)
    assert rc == 2 and "'up/*.tiff' matches no files" in error_line(err)
    assert "upper/lower" not in err  # .TIF is no .tiff
    import napari_sam as ns
    from napari_sam.training.data import TrainingDataError

    with pytest.raises(TrainingDataError, match=r"the pattern 'up/A\*.tif' matches no file; "
                       r"1 file matches it but for upper/lower case \(e.g. up/a.tif\): "
                       r"patterns compare letters exactly here; give a pattern with the "
                       r"files' upper and lower case$"):
        ns.train("up/A*.tif", "up/A*.tif", out="m.pt")


def test_a_pattern_on_a_case_insensitive_file_system_leaves_nothing_out(tmp_path, tiny_model,
                                                                        capsys, monkeypatch):
    """``auto "Data/*.tif"`` for the folder ``data/`` on a case-insensitive file system (macOS,
    an NTFS or SMB share): the pattern matched ``Data/a.tif``, the any-case search
    ``data/a.tif``, the same file; the note said it was left out by upper/lower case. Files
    are now compared as files. (``Data`` here is a link to ``data``: two spellings of one
    folder, as such a file system gives.)"""
    monkeypatch.chdir(tmp_path)
    noise_image(tmp_path / "data" / "a.tif", (64, 64))
    (tmp_path / "Data").symlink_to("data", target_is_directory=True)
    rc, stdout, err = cli(["auto", "Data/*.tif", "-o", "out", "--model", tiny_model,
                           "--points-per-side", "4", "--device", "cpu"], capsys)
    assert rc == 0 and "1 file: 1 done" in stdout, err
    assert "upper/lower" not in err
    assert [p.name for p in (tmp_path / "out").glob("*.tif")] == ["a_labels.tif"]


def test_a_sharp_s_and_ss_are_two_outputs_where_names_fold(tmp_path, tiny_model, capsys,
                                                          monkeypatch):
    """``Maß.tif`` and ``Mass.tif`` on a file system that folds case (NTFS, APFS keep them
    apart): both are segmented, each to its own file (was: refused as one output, the key
    case-folded ß to "ss"). ``A``/``a`` and ``café`` in its two Unicode forms stay one."""
    import unicodedata

    from napari_sam.batch import jobs
    from napari_sam.batch.output_names import output_key

    assert output_key(tmp_path / "Maß.tif", True) != output_key(tmp_path / "Mass.tif", True)
    assert output_key(tmp_path / "A.tif", True) == output_key(tmp_path / "a.tif", True)
    assert output_key(tmp_path / unicodedata.normalize("NFD", "Café.tif"), True) == (
        output_key(tmp_path / "café.tif", True))
    monkeypatch.setattr(jobs, "folds_names", lambda folder: True, raising=False)
    noise_image(tmp_path / "data" / "Maß.tif", (64, 64), seed=1)
    noise_image(tmp_path / "data" / "Mass.tif", (64, 64), seed=2)
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", tmp_path / "data", "-o", out, "--model", tiny_model,
                           "--points-per-side", "4", *FAST], capsys)
    assert rc == 0 and "2 files: 2 done" in stdout, err
    assert sorted(p.name for p in out.glob("*.tif")) == ["Mass_labels.tif", "Maß_labels.tif"]


# ------------------------------------------------------------------ 7: "scans [1]/*.tif"
def test_a_pattern_through_a_folder_named_with_brackets_says_how_to_write_them(
        tmp_path, tiny_model, capsys, monkeypatch):
    """``auto "scans [1]/*.tif"`` (a folder a copy named ``[1]``): the ``[1]`` selects the
    character 1, as in the shell, so the pattern matched nothing; it said only "matches no
    files". Now the error names the file it misses so and the pattern that takes it, which
    runs; nothing is written by the refused run."""
    monkeypatch.chdir(tmp_path)
    noise_image(tmp_path / "scans [1]" / "é 1.tif", (64, 64))
    run = ("-o", "out", "--model", tiny_model, "--points-per-side", "4", *FAST)
    rc, _, err = cli(["auto", "scans [1]/*.tif", *run], capsys)
    assert rc == 2 and not (tmp_path / "out").exists()
    assert error_line(err) == (
        "napari-sam: error: 'scans [1]/*.tif' matches no files; 1 file matches it with its "
        "square brackets read as they are (e.g. scans [1]/é 1.tif): in a pattern '[...]' "
        "stands for one of the characters inside, as in the shell; write each '[' as '[[]': "
        "\"scans [[]1]/*.tif\"")
    rc, stdout, err = cli(["auto", "scans [[]1]/*.tif", *run], capsys)
    assert rc == 0 and "1 file: 1 done" in stdout, err
    # the folder the pattern names is its fixed part: the outputs land in out/ as for
    # "scans [1]/é 1.tif" (the escaped '[' counted as a wildcard: out/scans [1]/...)
    assert sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*_labels.tif")) == ["é 1_labels.tif"]
    rc, _, err = cli(["auto", "scans [xy]/*.tif", *run], capsys)  # no such name either way
    assert rc == 2 and error_line(err) == "napari-sam: error: 'scans [xy]/*.tif' matches no files"
