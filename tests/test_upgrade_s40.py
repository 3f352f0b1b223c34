"""Upgrading napari-sam-stacks (helper walk-through, session 40): outputs written by an older
version, rerun with this one. What the user corrected in them is never replaced unasked."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from napari_sam import io as nio

pytestmark = pytest.mark.usefixtures("offline_cli")


def _as_written_before_content_hashes(out):
    """Rewrite ``out``'s sidecar in the layout of napari-sam before 2026-12-05 (e.g. commit
    64dff20): ``output`` holds only its name and size, ``parameters`` no ``prompts`` hash,
    ``model`` no precision. The sidecar is written after the output, as those versions did."""
    side = nio.output_metadata_path(out)
    meta = json.loads(side.read_text())
    meta["output"] = {"name": out.name, "size": out.stat().st_size}
    meta["parameters"].pop("prompts", None)
    meta["model"].pop("precision", None)
    side.write_text(json.dumps(meta, indent=2))
    os.utime(side, ns=(out.stat().st_mtime_ns + 10**9,) * 2)
    return side


@pytest.fixture
def old_npy_output(tmp_path, tiny_model, capsys):
    """``segment --format npy`` of one stack with its sidecar in the old layout:
    (argv, output)."""
    from stacks import blob_stack

    inp = tmp_path / "data" / "blobs.tif"
    inp.parent.mkdir()
    tifffile.imwrite(inp, blob_stack(z=3), photometric="minisblack")
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,slice,row,col\n1,1,20,20\n")
    argv = ["segment", inp, "-o", tmp_path / "out", "-p", prompts, "--model", tiny_model,
            "--format", "npy"]
    rc, _, err = cli([*argv, "-q"], capsys)
    out = tmp_path / "out" / "blobs_labels.npy"
    assert rc == 0 and out.is_file(), err
    _as_written_before_content_hashes(out)
    return argv, out


def test_npy_labels_corrected_after_an_old_version_wrote_them_are_kept(old_npy_output, capsys):
    """An older napari-sam's sidecar records only the output's size, which a correction of
    a .npy keeps (same shape and dtype). The rerun after upgrading recomputed the output
    (its sidecar has no prompts hash) and replaced the corrections without a word. Now an
    output modified after its sidecar was written counts as corrected: kept, and said."""
    argv, out = old_npy_output
    labels = np.load(out)
    labels[0, :4, :4] = 9  # the correction, saved with np.save: the same file size
    size = out.stat().st_size
    np.save(out, labels)
    later = nio.output_metadata_path(out).stat().st_mtime_ns + 60 * 10**9
    os.utime(out, ns=(later, later))
    assert out.stat().st_size == size
    rc, stdout, _ = cli(argv, capsys)
    assert rc == 0
    assert (np.load(out) == 9).sum() == 16
    assert nio.output_edited(out)
    assert "1 skipped (1 changed since written: kept)" in stdout, stdout
    assert "kept as it is; pass --overwrite to replace it" in stdout
    assert cli([*argv, "--overwrite"], capsys)[0] == 0
    assert not (np.load(out) == 9).any()


def test_an_old_output_not_corrected_is_recomputed_once(old_npy_output, capsys):
    """The other side: an old output untouched since its sidecar (and one whose time stamp
    is a second newer, as a copy of the folder may leave it) is no correction: the rerun
    recomputes it once (its prompts cannot be compared), then skips it."""
    argv, out = old_npy_output
    assert not nio.output_edited(out)
    side = nio.output_metadata_path(out)
    os.utime(out, ns=(side.stat().st_mtime_ns + 10**9,) * 2)
    assert not nio.output_edited(out)
    rc, stdout, _ = cli(argv, capsys)
    assert rc == 0 and "1 done" in stdout, stdout
    assert "sha256" in nio.read_output_metadata(out)["output"]
    rc, stdout, _ = cli(argv, capsys)
    assert rc == 0 and "1 skipped" in stdout, stdout


def test_an_embedding_store_of_the_previous_demo_weights_is_recomputed(tmp_path, capsys):
    """The bundled demo model's weights change between versions (its id, ``demo:<sha256>``,
    with them). ``embed`` (and ``auto``) skipped the old version's outputs as up to date,
    as only checkpoint files were compared; ``segment --embeddings`` then refused the store
    at every run ("not reusing ... made from another ... model") and the rerun meant to
    refresh it kept saying skipped. Now the demo's id is compared too: recomputed once."""
    from napari_sam.models.registry import where
    from stacks import blob_stack

    if not where("demo").is_file():
        pytest.skip("the bundled demo model is not installed")
    inp = tmp_path / "data" / "blobs.tif"
    inp.parent.mkdir()
    tifffile.imwrite(inp, blob_stack(z=1), photometric="minisblack")
    argv = ["embed", inp, "-o", tmp_path / "emb", "--model", "demo", "-q"]
    assert cli(argv, capsys)[0] == 0
    store = tmp_path / "emb" / "blobs.zarr"
    side = nio.output_metadata_path(store)
    meta = json.loads(side.read_text())
    now = meta["model"]["id"]
    assert now.startswith("demo:")
    meta["model"]["id"] = "demo:ef42a87a7cd5+smooth0.7"  # what the version of 2026-12-03 wrote
    side.write_text(json.dumps(meta))
    rc, stdout, _ = cli(argv, capsys)
    assert rc == 0 and "1 done" in stdout, stdout
    assert nio.read_output_metadata(store)["model"]["id"] == now
    rc, stdout, _ = cli(argv, capsys)
    assert rc == 0 and "1 skipped" in stdout, stdout


def test_auto_slices_an_older_version_left_are_not_reused(tmp_path, tiny_model, capsys):
    """An ``auto`` run of an older version, interrupted, leaves its finished slices in the
    work folder; rerun after upgrading, they were taken as this run's (``resumed_slices``)
    although the bundled demo model's weights (or a checkpoint's, retrained at the same
    path) had changed: one stack's labels from two models, and the sidecar naming only the
    new one. The work folder now records the model's id; one without it is started again."""
    from stacks import blob_stack

    inp = tmp_path / "data" / "blobs.tif"
    inp.parent.mkdir()
    tifffile.imwrite(inp, blob_stack(z=3), photometric="minisblack")
    argv = ["auto", inp, "-o", tmp_path / "out", "--model", tiny_model, "--points-per-side",
            "4", "--keep-work", "-q"]
    assert cli(argv, capsys)[0] == 0
    out = tmp_path / "out" / "blobs_labels.tif"
    work = tmp_path / "out" / ".napari-sam-work" / out.name / "auto"
    # what the older version left: its key without the model id, a slice of other labels,
    # and the "partial" sidecar of the run it was interrupted in
    marker = work / "params.json"
    key = json.loads(marker.read_text())
    key.pop("model_id", None)
    marker.write_text(json.dumps(key))
    with open(work / "z000000.npz", "wb") as f:
        np.savez_compressed(f, labels=np.full((64, 64), 1, np.uint16),
                            scores=np.array([np.nan, 0.5], np.float32))
    meta = nio.read_output_metadata(out)
    out.unlink()
    nio.output_metadata_path(out).write_text(json.dumps({**meta, "status": "partial"}))
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    assert nio.read_output_metadata(out)["extra"]["resumed_slices"] == 0
    labels = tifffile.imread(out)
    assert (labels[0] > 0).mean() < 0.9  # not the planted slice, labelled everywhere
