"""Every batch run says which model runs (helper walk-through, session 27: with
``--model FILE.pt`` nothing but the output metadata named it, so a run with the wrong file's
weights went unseen)."""

from __future__ import annotations

import numpy as np
import tifffile

from cli_runner import cli


def test_a_checkpoint_run_names_the_file_and_its_model_id(tmp_path, capsys, offline_cli,
                                                          tiny_model):
    from napari_sam import io as nio

    inp = tmp_path / "a.tif"
    tifffile.imwrite(inp, (np.random.default_rng(0).random((48, 48)) * 255).astype(np.uint8))
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "out", "--model", tiny_model], capsys)
    assert rc == 0, err
    recorded = nio.read_sidecar(tmp_path / "out" / "a_labels.tif")["model"]["id"]
    assert f"napari-sam: model {tiny_model} (id {recorded})" in err
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "demo", "--model", "demo"], capsys)
    assert rc == 0 and "napari-sam: model demo\n" in err
