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
    assert "3 files: 3 done" in stdout
    assert "b_link.tif" in stdout
    assert _outputs(out) == ["a_labels.tif", "b_link_labels.tif", "c_copy_labels.tif"]
    rc, stdout, err = cli(["auto", lnk, lnk / "a.tif", "-o", out, "--model", tiny_model,
                           *AUTO_FAST], capsys)
    assert rc == 0, err
    assert "3 files: 0 done, 3 skipped" in stdout

    named = tmp_path / "named"
    rc, stdout, err = cli(["auto", lnk / "a.tif", lnk / "b_link.tif", "-o", named, "--model",
                           tiny_model, *AUTO_FAST], capsys)
    assert rc == 0, err
    assert "2 files: 2 done" in stdout
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
    assert "3 files: 1 done, 2 skipped" in stdout
    assert _outputs(out) == ["b_link_labels.tif"]


def _linked_subfolders(tmp_path):
    """``sub/a/img.tif`` and ``sub/b/img.tif -> ../a/img.tif``: one file, one name, two
    subfolders (a curated folder of links beside the data)."""
    sub = tmp_path / "sub"
    noise_image(sub / "a" / "img.tif", (48, 48))
    (sub / "b").mkdir()
    (sub / "b" / "img.tif").symlink_to("../a/img.tif")
    return sub


def test_a_link_of_the_same_name_in_another_subfolder_is_an_input_of_its_own(
        tmp_path, tiny_model, capsys):
    """``-r`` over ``a/img.tif`` and ``b/img.tif -> ../a/img.tif`` did ``a/img.tif`` only,
    without a word (inputs were one per real file and name), although the outputs mirror
    the subfolders and cannot collide; the prompts of ``b/img.tif`` were lost. Now each is
    an input of its own, with its output in its subfolder and its own prompts."""
    sub = _linked_subfolders(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", sub, "-r", "-o", out, "--model", tiny_model, *AUTO_FAST],
                          capsys)
    assert rc == 0, err
    assert "2 files: 2 done" in stdout
    assert (out / "a" / "img_labels.tif").is_file() and (out / "b" / "img_labels.tif").is_file()
    csv = tmp_path / "p.csv"
    csv.write_text("file,id,slice,row,col\nb/img.tif,1,0,24,24\n")
    rc, stdout, err = cli(["segment", sub, "-r", "-p", csv, "-o", tmp_path / "seg", "--model",
                           tiny_model, *FAST], capsys)
    assert rc == 0, err
    assert "2 files: 1 done, 1 skipped" in stdout
    assert [p.relative_to(tmp_path / "seg").as_posix()
            for p in (tmp_path / "seg").rglob("*_labels.tif")] == ["b/img_labels.tif"]


def test_one_file_named_twice_for_one_output_is_done_once_and_said(tmp_path, tiny_model,
                                                                   capsys):
    """``auto a/img.tif b/img.tif`` (b a link to a) did one of them, without a word: both
    would write ``out/img_labels.tif``. It is still done once (the same file, the same
    output), and a note names the path left out and the one kept; a path given twice
    says nothing."""
    sub = _linked_subfolders(tmp_path)
    a, b = sub / "a" / "img.tif", sub / "b" / "img.tif"
    rc, stdout, err = cli(["auto", a, b, a, "-o", tmp_path / "out", "--model", tiny_model,
                           "--device", "cpu", "--points-per-side", "4"], capsys)
    assert rc == 0, err
    assert (f"napari-sam: note: {b} is the same file as {a} ({a.resolve()}) and would write "
            f"the same output: done once, as {a}") in err
    assert err.count("is the same file as") == 1
    assert "1 file: 1 done" in stdout


# ------------------------------------------------------------------ 2: --channel in a mixed folder
def _mixed_folder(tmp_path):
    """A 2D grey TIFF, a 3D ImageJ ``ZYX`` stack and a 2-channel ImageJ ``ZCYX`` stack."""
    import numpy as np
    import tifffile

    data = tmp_path / "mixed"
    noise_image(data / "grey2d.tif", (48, 56))
    rng = np.random.default_rng(1)
    stack = (rng.random((3, 48, 48)) * 1000).astype(np.uint16)
    tifffile.imwrite(data / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    two = np.stack([stack, stack[:, ::-1]], axis=1)
    tifffile.imwrite(data / "twochan.tif", two, imagej=True, metadata={"axes": "ZCYX"})
    return data


def _summary_row(stdout, name):
    rows = [line for line in stdout.splitlines() if line.split()[1:2] == [name]]
    assert len(rows) == 1, stdout
    return rows[0]


def test_channel_applies_to_the_files_with_a_channel_axis(tmp_path, tiny_model, capsys):
    """``--channel N`` applied to every file: a folder of grey images and one 2-channel stack
    could never exit 0 (without it the 2-channel file failed, with it every other file failed
    "channel=1 was given but the data has no channel axis"). Now the files whose metadata
    names axes without channels (and 2D images) are segmented as they are, with a note in the
    log, the summary and the sidecar; a rerun with ``--channel`` after one without redoes only
    the 2-channel file."""
    import json

    data = _mixed_folder(tmp_path)
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", data, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 1
    assert "Pick one channel with" in _summary_row(stdout, "twochan.tif")
    rc, stdout, err = cli(["auto", data, "-o", out, "--channel", "1", "--model", tiny_model,
                           *AUTO_FAST], capsys)
    assert rc == 0, err
    assert "3 files: 1 done, 2 skipped, 0 failed" in stdout

    fresh = tmp_path / "fresh"
    rc, stdout, err = cli(["auto", data, "-o", fresh, "--channel", "1", "--model", tiny_model,
                           "--device", "cpu", "--points-per-side", "4"], capsys)
    assert rc == 0, err
    assert "3 files: 3 done, 0 skipped, 0 failed" in stdout
    note = ("--channel 1 not used: the file has no channel axis (axes 'ZYX', from its "
            "metadata); segmented as it is")
    assert f"napari-sam: note: stack.tif: {note}" in err
    assert note in _summary_row(stdout, "stack.tif")
    assert "--channel 1 not used" in _summary_row(stdout, "grey2d.tif")
    assert "not used" not in _summary_row(stdout, "twochan.tif")
    extra = json.loads((fresh / "stack_labels.tif.json").read_text())["extra"]
    assert extra["channel_not_used"] == note
    assert "channel_not_used" not in json.loads(
        (fresh / "twochan_labels.tif.json").read_text())["extra"]


def test_channel_on_a_stack_with_guessed_axes_still_fails(tmp_path, tiny_model, capsys):
    """A stack whose axes are guessed from its shape (a ``.npy``) may hide a channel axis in
    the guess: ``--channel`` there still fails, saying how to name the axes with one letter
    per dimension (it said ``--axes CZYX (or ZCYX)`` for a 3D array, which fails)."""
    import numpy as np

    data = _mixed_folder(tmp_path)
    np.save(data / "guess.npy", np.zeros((3, 48, 48), np.uint16) + np.arange(48, dtype=np.uint16))
    out = tmp_path / "out"
    rc, stdout, err = cli(["auto", data, "-o", out, "--channel", "0", "--model", tiny_model,
                           *AUTO_FAST], capsys)
    assert rc == 1
    assert "4 files: 3 done, 0 skipped, 1 failed" in stdout
    row = _summary_row(stdout, "guess.npy")
    assert "no metadata names the axes" in row and "--axes CYX --channel N" in row
    assert "CZYX" not in row


# ------------------------------------------------------------------ 3: the waiting line
def test_no_waiting_line_without_a_pid_once_the_other_process_is_done(tmp_path, tiny_model,
                                                                      capsys, monkeypatch):
    """Two runs on one folder: the first run's waiting line read "another napari-sam process
    is writing ..." without a pid (the other process had finished meanwhile and its lock file
    was gone) while later ones said "(pid 3363)". Now an output whose writer has finished by
    the time this run comes back to it is not waited for (no waiting line); a waiting line
    always names the pid it read (tests/test_cli_bad_inputs.py: the writer still running)."""
    import subprocess
    import sys

    from napari_sam.cli import batch_command

    data = tmp_path / "in"
    for name in ("a.tif", "b.tif"):
        noise_image(data / name, (48, 48))
    out = tmp_path / "out"
    release = tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from pathlib import Path; from napari_sam.batch import OutputLock\n"
         f"lock = OutputLock(Path({str(out / 'a_labels.tif')!r}))\n"
         "assert lock.__enter__()\nprint('locked', flush=True)\n"
         f"while not Path({str(release)!r}).exists(): time.sleep(0.02)\n"
         "lock.__exit__(None, None, None)\n"],
        stdout=subprocess.PIPE, text=True)
    shown = batch_command.print_result

    def print_result(res, *args, **kwargs):  # b.tif done: the other process ends, then a.tif
        shown(res, *args, **kwargs)
        if res.input.endswith("b.tif"):
            release.touch()
            holder.wait(timeout=60)

    monkeypatch.setattr(batch_command, "print_result", print_result)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, stdout, err = cli(["auto", data, "-o", out, "--model", tiny_model, "--device",
                               "cpu", "--points-per-side", "4"], capsys)
    finally:
        release.touch()
        holder.wait(timeout=60)
    assert rc == 0, err
    assert "another napari-sam process is writing" not in err
    assert not [line for line in err.splitlines() if line.startswith("waiting")], err
    assert "2 files: 2 done" in stdout
    assert _outputs(out) == ["a_labels.tif", "b_labels.tif"]


# ------------------------------------------------------------------ 4: a bar with its total
def test_a_terminal_bar_is_drawn_with_its_total(tmp_path, tiny_model, capsys, monkeypatch):
    """On a terminal the bar first read ``stack.tif: segment everything: 0slice [00:00,
    ?slice/s]`` (no total) before ``0/4``: it is drawn with its total from its first frame."""
    from napari_sam.batch import progress as P

    monkeypatch.setattr(P, "stderr_is_terminal", lambda: True)
    inp = noise_image(tmp_path / "stack.tif", (4, 48, 48))
    rc, stdout, err = cli(["auto", inp, "-o", tmp_path / "out", "--model", tiny_model,
                           "--device", "cpu", "--points-per-side", "4"], capsys)
    assert rc == 0, err
    frames = [f for f in err.replace("\r", "\n").splitlines() if "segment everything" in f]
    assert frames and "stack.tif: segment everything:" in frames[0], err
    assert "0slice [" not in err, err
    assert all("/4 [" in f for f in frames), frames  # (frames tqdm draws depend on load)


# ------------------------------------------------------------------ 5: the documented prompts
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _commands(doc: str) -> list[list[str]]:
    """The ``napari-sam`` commands of ``doc``'s code blocks, in order, as argument lists."""
    import re
    import shlex

    text = (ROOT / doc).read_text(encoding="utf-8")
    return [shlex.split(line, comments=True)[1:]
            for block in re.findall(r"```[a-z]*\n(.*?)\n```", text, re.S)
            for line in block.replace("\\\n", " ").splitlines()
            if line.startswith("napari-sam ")]


def test_sample_writes_one_click_per_object_for_segment(tmp_path, capsys, monkeypatch):
    """``sample nuclei-3d`` wrote no prompts, so the docs' ``segment --prompts clicks.csv``
    could not run on the sample data. Now it writes ``data/prompts.csv``: one click per
    ground-truth object, inside it on its largest slice; a second run keeps the first run's
    rows; a 2D sample adds none; ``auto "data/*.tif"`` and ``segment data/`` see no CSV."""
    import csv

    import numpy as np
    import tifffile

    from napari_sam.batch import collect_inputs

    monkeypatch.chdir(tmp_path)
    rc, stdout, err = cli(["sample", "nuclei-3d", "nuclei-2d", "-o", "data/", "--shape",
                           "8,64,64"], capsys)
    assert rc == 2  # one --shape for a 3D and a 2D sample
    rc, stdout, err = cli(["sample", "nuclei-3d", "-o", "data/", "--shape", "8,64,64"], capsys)
    assert rc == 0, err
    assert "wrote    data/prompts.csv (" in stdout
    gt = tifffile.imread("data/ground_truth/nuclei-3d_seed10000.tif")
    rows = list(csv.DictReader(open("data/prompts.csv", encoding="utf-8")))
    ids = sorted(int(r["id"]) for r in rows)
    assert ids == sorted(int(i) for i in np.unique(gt) if i)
    for r in rows:
        assert r["file"] == "nuclei-3d_seed10000.tif"
        oid, z = int(r["id"]), int(r["slice"])
        assert gt[z, int(r["row"]), int(r["col"])] == oid
        assert (gt[z] == oid).sum() == max((gt[k] == oid).sum() for k in range(len(gt)))
    rc, stdout, err = cli(["sample", "em-3d", "nuclei-2d", "-o", "data/", "-q"], capsys)
    assert rc == 0, err
    files = {r["file"] for r in csv.DictReader(open("data/prompts.csv", encoding="utf-8"))}
    assert files == {"nuclei-3d_seed10000.tif", "em-3d_seed10000.tif"}
    assert "prompts.csv" not in {p.name for p in collect_inputs(["data/*.tif"])}
    assert "prompts.csv" not in {p.name for p in collect_inputs(["data/"])}


def test_a_rerun_of_sample_keeps_the_users_edits_of_prompts_csv(tmp_path, capsys, monkeypatch):
    """A user who moved a click and added one in ``prompts.csv`` and ran ``sample`` again
    (the samples kept) keeps both; rows of a regenerated sample (``--overwrite``) are new
    (reviewer of session 36: a rerun rewrote every row of the kept samples)."""
    monkeypatch.chdir(tmp_path)
    args = ["sample", "nuclei-3d", "-o", "data/", "--shape", "8,64,64", "-q"]
    assert cli(args, capsys)[0] == 0
    path = tmp_path / "data" / "prompts.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    edited = lines[1].rsplit(",", 2)[0] + ",1,1"  # the first click moved to (1, 1)
    mine = "nuclei-3d_seed10000.tif,99,2,30,30"  # a click added by hand
    path.write_text("\n".join([lines[0], edited, *lines[2:], mine]) + "\n", encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    assert cli(args, capsys)[0] == 0  # the sample is kept: so are the rows
    assert path.read_text(encoding="utf-8") == before
    assert cli([*args, "--overwrite"], capsys)[0] == 0  # regenerated: its clicks anew
    after = path.read_text(encoding="utf-8").splitlines()
    assert mine not in after and edited not in after and after == lines


def test_the_documented_prompted_example_runs_on_the_sample(tmp_path, tiny_model, capsys,
                                                             monkeypatch):
    """README and docs/cli.md: the ``segment ... --prompts data/prompts.csv`` example runs as
    written after ``sample nuclei-3d -o data/`` (here on a smaller stack and the tiny model):
    every object clicked is segmented; the README's main job (sample, then auto) is the same
    as before."""
    import re
    import shlex

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    main_job = re.search(r"napari-sam (sample [^&\n]+?) &&", readme)  # the setup line's
    assert main_job, "README.md: no main job"
    for n, doc in enumerate(("README.md", "docs/cli.md")):
        commands = _commands(doc)
        sample = shlex.split(main_job[1]) if doc == "README.md" else next(
            c for c in commands if c[0] == "sample")
        assert sample == ["sample", "nuclei-3d", "-o", "data/"], (doc, sample)
        segment = [c for c in commands if c[0] == "segment" and "data/prompts.csv" in c]
        assert segment, doc
        assert not [c for c in commands if "clicks.csv" in c], doc
        (tmp_path / f"run{n}").mkdir()
        monkeypatch.chdir(tmp_path / f"run{n}")
        rc, _, err = cli([*sample, "--shape", "6,64,64", "-q"], capsys)
        assert rc == 0, err
        n_clicks = len(open("data/prompts.csv", encoding="utf-8").read().splitlines()) - 1
        argv = [w for w in segment[0] if not w.startswith("sam2")]
        if "--model" in argv:
            argv.remove("--model")
        rc, stdout, err = cli([*argv, "--model", tiny_model, "--device", "cpu", "-q"], capsys)
        assert rc == 0, err
        assert "1 file: 1 done" in stdout
        out = argv[argv.index("-o") + 1].rstrip("/")
        import json

        meta = json.loads(open(f"{out}/nuclei-3d_seed10000_labels.tif.json").read())
        assert len(meta["objects"]) <= n_clicks and meta["parameters"]["prompts"]
