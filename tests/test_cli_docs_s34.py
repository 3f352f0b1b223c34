"""The command-line docs and help, read as a new user runs them: command sequences that run
as written, help texts that say what each option does for its command, and messages that
give command-line advice."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from cli_runner import cli, error_line, noise_image, tiny_train_argv

ROOT = Path(__file__).resolve().parents[1]
SEQUENCE_DOCS = ("README.md", "docs/cli.md", "docs/sam2.md")


def _commands(doc: str) -> list[list[str]]:
    """The ``napari-sam`` commands of ``doc``'s code blocks, in order, as argument lists
    (comments dropped, continuation lines joined)."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)\n```", text, re.S):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            if line.startswith("napari-sam "):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def _output(words: list[str]) -> str | None:
    for flag in ("-o", "--output"):
        if flag in words:
            return words[words.index(flag) + 1].rstrip("/")
    return None


def test_documented_segment_runs_do_not_write_into_the_auto_output_folder():
    """``auto -o out/`` then ``segment -o out/`` stops with "... was written by napari-sam
    auto; pass --overwrite, --suffix or another output folder": the docs (which a user follows
    one after the other) use another folder."""
    commands = [c for doc in SEQUENCE_DOCS for c in _commands(doc)]
    auto = {_output(c) for c in commands if c[0] == "auto"}
    segment = {_output(c) for c in commands if c[0] == "segment"}
    assert "out" in auto and len(segment) >= 2
    assert not auto & segment, auto & segment


def test_documented_training_example_has_its_data_and_runs(tiny_model, offline_cli, tmp_path,
                                                           monkeypatch, capsys):
    """The README's and cli.md's ``train`` example is preceded by the ``sample`` command that
    makes its images and labels, and the pair runs as written (here on 4 samples, one step of
    one epoch of the tiny model)."""
    for n, doc in enumerate(("README.md", "docs/cli.md")):
        commands = _commands(doc)
        train = next(c for c in commands if c[0] == "train")
        sample = commands[commands.index(train) - 1]
        assert sample[0] == "sample", (doc, sample)
        (tmp_path / f"run{n}").mkdir()
        monkeypatch.chdir(tmp_path / f"run{n}")
        rc, _, err = cli([*sample, "-n", "4", "-q"], capsys)
        assert rc == 0, err
        rc, out, err = cli(tiny_train_argv(*train[1:3], train[train.index("-o") + 1],
                                           tiny_model), capsys)
        assert rc == 0, err
        assert Path("my_model.pt").is_file() and Path("my_model.json").is_file()


def test_a_failed_mirror_download_names_the_official_url_to_get_by_hand(offline_cli, tmp_path,
                                                                         capsys):
    """``models download NAME --url MIRROR`` that fails: the by-hand advice names the model's
    official URL (was: the user's own mirror again) and says the URL given failed."""
    from napari_sam.models.registry import get_spec

    mirror = (tmp_path / "missing.pt").as_uri()
    rc, _, err = cli(["models", "download", "vit_t_lm", "--url", mirror], capsys)
    assert rc == 1
    line = error_line(err)
    official = get_spec("vit_t_lm").url
    assert official.startswith("https://") and official != mirror
    assert (f"To install it by hand, download the model's official file {official} (the URL "
            f"given, {mirror}, failed) on a machine with internet access") in line


def test_models_download_url_is_documented():
    """docs/cli.md and docs/models.md describe ``models download NAME --url URL``."""
    for doc in ("docs/cli.md", "docs/models.md"):
        text = " ".join((ROOT / doc).read_text(encoding="utf-8").split())
        assert "download vit_b_lm --url URL" in text or "download NAME --url URL" in text, doc


def test_an_unavailable_device_gets_command_line_advice(tiny_model, offline_cli, tmp_path,
                                                        capsys):
    """``--device cuda`` (``mps``) on a machine without it: the hint is ``--device auto`` (was:
    Python's ``device='auto'``; for mps no hint); the API keeps ``device='auto'``."""
    import pytest
    import torch

    from napari_sam.device import resolve_device

    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("needs a machine without CUDA and MPS")
    import numpy as np
    import tifffile

    image = noise_image(tmp_path / "data" / "a.tif")
    labels = np.zeros((64, 64), np.uint16)
    labels[10:30, 10:30], labels[40:60, 35:55] = 1, 2
    (tmp_path / "gt").mkdir()
    tifffile.imwrite(tmp_path / "gt" / "a.tif", labels)
    for dev, what in (("cuda", "CUDA"), ("mps", "Apple MPS")):
        for argv in (["embed", image, "-o", tmp_path / "e"],
                     tiny_train_argv(image, tmp_path / "gt", tmp_path / "m.pt", tiny_model)):
            rc, _, err = cli([*argv, "--device", dev], capsys)
            assert rc == 2
            assert error_line(err) == (
                f"napari-sam: error: --device: device '{dev}' was asked for but {what} is not "
                "available here; available devices: cpu (use --device auto)")
        with pytest.raises(ValueError, match=r"available devices: cpu \(use device='auto'\)$"):
            resolve_device(dev)
    assert not (tmp_path / "e").exists() and not (tmp_path / "m.pt").exists()


def _subparsers(parser=None) -> dict:
    """``{name: parser}`` of every ``napari-sam`` subcommand (``models list`` as
    ``"models list"``)."""
    import argparse

    from napari_sam.cli import build_parser

    parser = parser or build_parser()
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


def _option(parser, dest: str):
    return next(a for a in parser._actions if a.dest == dest)


def test_input_help_names_every_readable_format():
    """The INPUT help of embed, auto and segment names PNG and JPEG, which are read (was:
    TIFF, OME-TIFF, .npy, .zarr only)."""
    from napari_sam.batch.inputs import IMAGE_SUFFIXES

    assert {".png", ".jpg", ".jpeg"} <= set(IMAGE_SUFFIXES)
    subs = _subparsers()
    for command in ("embed", "auto", "segment"):
        assert _option(subs[command], "inputs").help == (
            "image files (TIFF, OME-TIFF, .npy, .zarr, PNG, JPEG), directories or quoted glob "
            "patterns such as \"data/*.tif\""), command


def test_threads_and_block_slices_help_say_what_they_do_for_each_command():
    """``--threads`` said "slices `auto` segments at once" in embed and segment too, and
    segment offered ``--block-slices`` as if it split its stacks (it ignores it, with a note)."""
    subs = _subparsers()
    threads = {c: _option(subs[c], "threads").help for c in ("embed", "auto", "segment")}
    assert threads["auto"].startswith("CPU threads of this process: torch's threads, and "
                                      "slices segmented at once (default: from the cores")
    for command in ("embed", "segment"):
        assert "at once" not in threads[command] and "auto" not in threads[command], command
    assert "image encoder" in threads["embed"]
    assert "propagate the objects" in threads["segment"]
    blocks = {c: _option(subs[c], "block_slices").help for c in ("embed", "auto", "segment")}
    assert blocks["embed"] == blocks["auto"] == (
        "on a cluster, split stacks with more than N slices into blocks of N slices processed "
        "in parallel")
    assert blocks["segment"].startswith("ignored by segment (it propagates slice after slice")


def test_every_option_of_every_subcommand_has_help():
    """No option of any ``napari-sam`` subcommand is listed without a help text (auto's
    --stability-score-offset, --crop-nms-thresh and --crop-n-points-downscale-factor were)."""
    import argparse

    missing = []
    for name, parser in _subparsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_segment_and_auto_help_give_choices_and_defaults():
    """``segment --help`` explains --mode's choices and gives the defaults of --mode,
    --iou-threshold, --min-area, --claimed-fraction and --max-slices, as argparse applies
    them; auto's crop and mask-region options give theirs; docs/cli.md gives them too."""
    subs = _subparsers()
    segment = subs["segment"]
    expected = {"mode": "(default: auto)", "iou_threshold": "(default: 0.5)",
                "min_area": "(default: 5)", "claimed_fraction": "(default: 0.5)",
                "max_slices": "(default: no limit)"}
    for dest, text in expected.items():
        action = _option(segment, dest)
        assert action.help.endswith(text), dest
        shown = "no limit" if action.default is None else str(action.default)
        assert text == f"(default: {shown})", dest
    mode = _option(segment, "mode").help
    assert all(f"{m} (" in mode for m in ("box", "box+mask", "points", "center")), mode
    auto = subs["auto"]
    for dest in ("crop_n_layers", "min_mask_region_area", "stability_score_offset",
                 "crop_nms_thresh", "crop_n_points_downscale_factor"):
        action = _option(auto, dest)
        assert f"(default: {action.default}" in action.help or \
            f"; default: {action.default}" in action.help, dest
    text = " ".join((ROOT / "docs/cli.md").read_text(encoding="utf-8").split())
    for phrase in ("`--iou-threshold` (default 0.5)", "`--min-area` (pixels, default 5)",
                   "`--max-slices` (default: no limit)", "(`--claimed-fraction`, default 0.5)",
                   "`auto` (the default: `box+mask`)"):
        assert phrase in text, phrase


def test_cpu_threads_docs_quote_the_device_line_that_prints(tiny_model, offline_cli, tmp_path,
                                                            monkeypatch, capsys):
    """docs/cli.md ("CPU threads") quoted `device cpu, ... (N threads), M slices at once`;
    it quotes what ``auto --threads 2`` and ``embed --threads 1`` print on a CPU without
    native bf16."""
    import pytest

    from napari_sam.device import PRECISION_ENV, cpu_bf16_feature

    if cpu_bf16_feature() is not None:
        pytest.skip("the quoted lines are a CPU's without native bf16")
    monkeypatch.delenv(PRECISION_ENV)
    text = " ".join((ROOT / "docs/cli.md").read_text(encoding="utf-8").split())
    section = text.split("## CPU threads", 1)[1].split("## ", 1)[0]
    image = noise_image(tmp_path / "a.tif")
    for argv, threads in ((["auto", image, "-o", tmp_path / "o"], "2"),
                          (["embed", image, "-o", tmp_path / "e"], "1")):
        rc, _, err = cli([*argv, "--model", tiny_model, "--threads", threads], capsys)
        assert rc == 0, err
        line = next(x for x in err.splitlines() if x.startswith("napari-sam: device "))
        assert f"`{line}`" in section, line


def test_sam2_docs_quote_the_device_line_that_prints():
    """docs/sam2.md quotes SAM 2.1's device line as it prints, and says when the --precision
    clause is added."""
    from argparse import Namespace

    from napari_sam.cli.batch_command import device_line

    text = " ".join((ROOT / "docs/sam2.md").read_text(encoding="utf-8").split())
    plain = device_line(Namespace(scheduler=None, device="cpu", precision="auto"), "sam2", 1)
    given = device_line(Namespace(scheduler=None, device="cpu", precision="fp32"), "sam2", 1)
    assert given == plain[:-1] + "; --precision is not used)"
    assert f"`napari-sam: {plain}`, with `; --precision is not used` before the closing " \
           "bracket when `--precision` other than `auto` is given" in text


def test_models_list_shows_the_approximate_size_of_micro_sam_models(offline_cli, capsys):
    """``models list`` showed size ``?`` for micro-sam's models (no published size); it shows
    the approximate size docs/models.md gives, marked ``~``; exact sizes stay as they were."""
    rc, out, _ = cli(["models", "list"], capsys)
    assert rc == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    expected = {"vit_b_lm": "~375", "vit_t_lm": "~40", "vit_l_lm": "~1.2",
                "vit_b_em_organelles": "~375", "vit_t_em_organelles": "~40"}
    docs = (ROOT / "docs/models.md").read_text(encoding="utf-8")
    for name, size in expected.items():
        unit = "GB" if name == "vit_l_lm" else "MB"
        assert rows[name][2:4] == [size, unit], rows[name]
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"not published ({size} {unit})" in row, row
    assert rows["vit_b"][2:4] == ["375.0", "MB"] and rows["vit_h"][2:4] == ["2.6", "GB"]
    assert "?" not in {r[2] for r in rows.values() if len(r) > 2}


def test_a_model_name_given_as_a_missing_file_gets_a_suggestion(tiny_model, offline_cli,
                                                                 tmp_path, monkeypatch, capsys):
    """``--model sam2.1_hiera_tiny.pt`` (no such file) suggests the registry name, as the
    Python API suggests close names; so do close misspellings and ``models download``."""
    from napari_sam.models.registry import REGISTRY

    known = ", ".join(REGISTRY)
    monkeypatch.chdir(tmp_path)
    image = noise_image(tmp_path / "a.tif")
    cases = {"sam2.1_hiera_tiny.pt": "'sam2.1_hiera_tiny'", "vit_b_lm.pth": "'vit_b_lm'",
             "vitb_lm": "'vit_b_lm' or 'vit_l'"}
    for given, meant in cases.items():
        rc, _, err = cli(["auto", image, "-o", tmp_path / "o", "--model", given], capsys)
        assert rc == 2
        assert error_line(err) == (
            f"napari-sam: error: --model {given!r} is neither a known model (did you mean "
            f"{meant}?) nor an existing checkpoint file; known models: {known}")
    rc, _, err = cli(["models", "download", "sam2.1_hiera_tiny.pt"], capsys)
    assert rc == 2
    assert error_line(err) == ("napari-sam: error: unknown model 'sam2.1_hiera_tiny.pt' (did "
                               f"you mean 'sam2.1_hiera_tiny'?); known models: {known}")
    assert not (tmp_path / "o").exists()


def test_tiling_is_spelled_the_same_in_help_and_docs():
    """``--tiling``'s help wrote ``W,HALO`` where docs/tiling.md, docs/tiling_stacks.md and
    the option's own error write ``WINDOW,HALO``."""
    subs = _subparsers()
    for command in ("embed", "auto", "segment"):
        action = _option(subs[command], "tiling")
        assert action.metavar == "auto|off|HALO|WINDOW,HALO", command
        assert "WINDOW,HALO: windows of WINDOW px" in action.help
        assert not re.search(r"\bW,", action.help), action.help
    for doc in ("docs/tiling.md", "docs/tiling_stacks.md"):
        assert "--tiling auto|off|HALO|WINDOW,HALO" in (ROOT / doc).read_text(encoding="utf-8")
