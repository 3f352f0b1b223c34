"""``napari-sam segment --method sam2`` says a file's notes on stderr as SAM 1's segment does:
the file's own (``--channel`` not used, guessed axes, ...) and the objects that are not in
the labels, in the same words (no Python warning, no "VolumeResult" of the library)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from cli_runner import cli
from sam2_checkpoint import save_sam2_checkpoint
from stacks import blob_stack

pytestmark = pytest.mark.timeout(900)

LOSING = {"objects": {"1": [{"slice": 1, "box": [0, 0, 63, 63]}],
                      "2": [{"slice": 1, "box": [20, 20, 30, 30]}, {"slice": 0, "stop": True},
                            {"slice": 2, "stop": True}]}}


@pytest.fixture(scope="module")
def sam2_never_present(tmp_path_factory):
    """A random Hiera-T SAM 2.1 whose object head finds no object present: an object inside
    another's box loses every pixel to it (``lost``)."""
    path = save_sam2_checkpoint(tmp_path_factory.mktemp("sam2") / "sam2.pt")
    state = torch.load(path)
    state["model"]["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = torch.tensor(
        [-1000.0])
    torch.save(state, path)
    return path


def _stack(tmp_path):
    tifffile.imwrite(tmp_path / "b.tif", blob_stack(z=3), imagej=True, metadata={"axes": "ZYX"})
    return tmp_path / "b.tif"


def _notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("napari-sam: note: b.tif")]


def test_sam2_says_the_files_notes_as_sam1_does(tmp_path, offline_cli, tiny_model,
                                                sam2_never_present, capsys):
    stack = _stack(tmp_path)
    prompts = tmp_path / "p.csv"
    prompts.write_text("file,id,slice,row,col,label\n,1,1,20,20,1\n")
    said = {}
    for method, model in (("sam1", tiny_model), ("sam2", sam2_never_present)):
        rc, _, err = cli(["segment", stack, "-p", prompts, "-o", tmp_path / method, "--model",
                          model, "--method", method, "--channel", "0", "--device", "cpu"],
                         capsys)
        assert rc == 0, err
        said[method] = _notes(err)
    assert said["sam2"] == said["sam1"] == [
        "napari-sam: note: b.tif: --channel 0 not used: the file has no channel axis (axes "
        "'ZYX', from its metadata); segmented as it is"]


def test_sam2_says_its_lost_objects_in_sam1s_words(tmp_path, offline_cli, sam2_never_present,
                                                   capsys):
    import json

    stack = _stack(tmp_path)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(LOSING))
    rc, _, err = cli(["segment", stack, "-p", prompts, "-o", tmp_path / "out", "--model",
                      sam2_never_present, "--method", "sam2", "--device", "cpu"], capsys)
    assert rc == 0, err
    assert _notes(err) == [
        "napari-sam: note: b.tif: objects [2] are not in the labels: its masks lost every "
        "pixel to other objects (their prompts segment the same thing); give it prompts on "
        "its own object"]
    sidecar = json.loads((tmp_path / "out" / "b_labels.tif.json").read_text())
    assert list(sidecar["extra"]["lost"]) == ["2"] and sidecar["extra"]["notes"] == []
    # quiet: no note
    rc, _, err = cli(["segment", stack, "-p", prompts, "-o", tmp_path / "q", "--model",
                      sam2_never_present, "--method", "sam2", "--device", "cpu", "-q"], capsys)
    assert rc == 0 and _notes(err) == []
    assert np.any(tifffile.imread(tmp_path / "q" / "b_labels.tif"))
