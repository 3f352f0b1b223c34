"""``napari-sam segment --method sam2``: the same prompts CSV and outputs as SAM 1's segment,
resumable, Ctrl-C safe, and clear errors for a model of the other family, prompts beyond
the stack and stacks with channels. Through ``napari_sam.cli.app.main``.

The SAM 2.1 checkpoint is random Hiera-T weights in Meta's format, run at 128 px (its JSON
metadata file says ``image_size``), with the object-score head biased to "present".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam import io as nio
from napari_sam.cli.app import main
from napari_sam.models.sam2 import SAM2_CONFIGS, Sam2Model
from test_sam2_registry import meta_format

pytestmark = pytest.mark.timeout(900)

CSV = ("file,id,slice,row,col,label,row0,col0,row1,col1\n"
       ",1,2,20,24,1,,,,\n"
       ",2,3,,,,4,4,18,20\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_sam2")
    torch.manual_seed(0)
    model = Sam2Model(SAM2_CONFIGS["sam2.1_hiera_tiny"])
    state = meta_format(model)
    state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = torch.tensor([3.0])
    torch.save({"model": state}, root / "sam2_tiny.pt")
    (root / "sam2_tiny.pt.json").write_text(json.dumps({"image_size": 128}))
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 3000, (5, 40, 48)).astype(np.uint16)
    stack[:, 8:30, 10:34] += 4000
    (root / "data").mkdir()
    tifffile.imwrite(root / "data" / "stack.tif", stack, imagej=True,
                     metadata={"axes": "ZYX"})
    (root / "prompts.csv").write_text(CSV)
    from napari_sam.models.build import SamConfig, build_sam
    from tiny_configs import TINY_CNN

    cfg = SamConfig(**TINY_CNN)
    torch.save(build_sam(cfg).state_dict(), root / "sam1.pt")
    (root / "sam1.pt.json").write_text(json.dumps({"config": cfg.to_dict()}))
    return root


def segment(files: Path, *extra, out="out") -> int:
    return main(["segment", str(files / "data"), "-o", str(files / out), "-p",
                 str(files / "prompts.csv"), *map(str, extra)])


def test_segment_method_sam2_writes_labels_and_stop_reasons_then_skips_on_rerun(files,
                                                                                capsys):
    rc = segment(files, "--model", files / "sam2_tiny.pt", "--method", "sam2", "-q")
    assert rc == 0, capsys.readouterr()
    out = files / "out" / "stack_labels.tif"
    img = nio.read_image(out)
    assert img.axes == "ZYX" and img.data.shape == (5, 40, 48)
    ids = sorted(np.unique(img.data[img.data > 0]).tolist())
    assert ids and set(ids) <= {1, 2}
    sc = nio.read_sidecar(out)
    assert sc["status"] == "complete" and sc["extra"]["method"] == "sam2"
    assert set(sc["extra"]["stop_reasons"]) == {str(i) for i in ids}
    for reasons in sc["extra"]["stop_reasons"].values():
        assert set(reasons) == {"up", "down"}
        assert set(reasons.values()) <= {"edge", "absent", "stop_marker"}
    assert sc["parameters"]["method"] == "sam2" and sc["parameters"]["stop_after_absent"] == 2
    assert "mode" not in sc["parameters"]  # SAM 1's options are not part of a sam2 output
    assert [o["id"] for o in sc["objects"]] == ids
    mtime = out.stat().st_mtime_ns
    capsys.readouterr()
    assert segment(files, "--model", files / "sam2_tiny.pt", "--method", "sam2") == 0
    captured = capsys.readouterr()
    assert "Summary: 1 file: 0 done, 1 skipped, 0 failed" in captured.out
    assert out.stat().st_mtime_ns == mtime
    # without --method a SAM 2.1 model propagates with its memory: the same output
    assert segment(files, "--model", files / "sam2_tiny.pt", "-q", out="inferred") == 0
    again = nio.read_image(files / "inferred" / "stack_labels.tif").data
    assert np.array_equal(again, img.data)


def test_ctrl_c_leaves_no_output_and_a_rerun_completes(files, capsys, monkeypatch):
    import napari_sam.sam2_volume as sv

    real = sv.segment_volume_sam2

    def interrupted(*args, **kwargs):
        kwargs["progress"](1, 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(sv, "segment_volume_sam2", interrupted)
    rc = segment(files, "--model", files / "sam2_tiny.pt", "--method", "sam2", out="ctrl_c")
    assert rc == 130
    assert "Interrupted: finished outputs are complete; rerun the same command to resume." \
        in capsys.readouterr().out
    out = files / "ctrl_c" / "stack_labels.tif"
    assert not nio.is_complete(out, files / "data" / "stack.tif")
    monkeypatch.setattr(sv, "segment_volume_sam2", real)
    assert segment(files, "--model", files / "sam2_tiny.pt", "--method", "sam2", "-q",
                   out="ctrl_c") == 0
    assert nio.is_complete(out, files / "data" / "stack.tif")


def test_method_sam2_with_a_sam1_model_and_the_reverse_are_named(files, capsys):
    assert segment(files, "--model", files / "sam1.pt", "--method", "sam2", out="e1") == 2
    err = capsys.readouterr().err
    assert "--method sam2 needs a SAM 2.1 model, but --model" in err
    assert "is a SAM 1 model (tiny_cnn); give --model sam2.1_hiera_tiny" in err
    assert segment(files, "--model", files / "sam2_tiny.pt", "--method", "sam1", out="e2") == 2
    err = capsys.readouterr().err
    assert "--method sam1 needs a SAM 1 model, but --model" in err
    assert "is a SAM 2.1 checkpoint (sam2.1_hiera_tiny); use --method sam2" in err
    assert segment(files, "--model", "vit_b", "--method", "sam2", out="e3") == 2
    assert "--model vit_b is a SAM 1 model (vit_b)" in capsys.readouterr().err
    assert not (files / "e1").exists() or not any((files / "e1").glob("*.tif"))
    rc = main(["embed", str(files / "data"), "-o", str(files / "e4"), "--model",
               str(files / "sam2_tiny.pt")])
    assert rc == 2
    assert "`napari-sam embed` needs a SAM 1 model, but --model" in capsys.readouterr().err


def test_prompts_beyond_the_stack_and_a_stack_with_channels_are_named(files, capsys,
                                                                      tmp_path):
    beyond = tmp_path / "beyond.csv"
    beyond.write_text("id,slice,row,col\n1,9,20,24\n")
    rc = main(["segment", str(files / "data"), "-o", str(tmp_path / "o1"), "-p", str(beyond),
               "--model", str(files / "sam2_tiny.pt"), "--method", "sam2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "slice 9" in err and "5 slices" in err
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    tifffile.imwrite(rgb / "rgb.tif", np.zeros((5, 40, 48, 3), np.uint8), photometric="rgb",
                     metadata={"axes": "ZYXS"})
    rc = main(["segment", str(rgb), "-o", str(tmp_path / "o2"), "-p",
               str(files / "prompts.csv"), "--model", str(files / "sam2_tiny.pt")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED   rgb.tif: segment --method sam2 needs single-channel slices, but rgb.tif " \
           "has 3 channels per slice" in err
    assert "choose one with --channel N" in err


def test_a_rerun_after_a_kill_says_sam2_recomputed_not_resumed(files, capsys):
    """A job killed after writing its labels, before its sidecar (a ``"partial"`` sidecar
    beside the output): SAM 2 keeps nothing of that run (no store: each slice is encoded as
    its propagation reaches it), yet the rerun's line said ``resumed: an earlier run did not
    finish it``, from the sidecar; ``auto`` and ``segment`` say what they kept from the work
    folder, and with nothing kept ``recomputed``."""
    import re

    argv = ("--model", files / "sam2_tiny.pt", "--method", "sam2")
    assert segment(files, *argv, "-q", out="killed") == 0
    out = files / "killed" / "stack_labels.tif"
    sidecar = nio.output_metadata_path(out)
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "status": "partial", "pid": 2 ** 22 + 1}))
    capsys.readouterr()
    assert segment(files, *argv, out="killed") == 0
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("done     stack.tif"))
    assert re.search(r"s; recomputed: an earlier run did not finish it\)$", line), line
    assert "resumed" not in err
