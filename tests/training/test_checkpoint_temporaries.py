"""Temporary files of killed checkpoint saves (session 40 review).

* ``.m.pt.tmp-PID`` files were removed when no process ``PID`` ran *on this machine*: a save
  running on another cluster node sharing the folder (or in another container) lost its
  file; and they were removed before any refusal, so a mistaken ``train`` that exited 2
  removed them too. Temporary names now carry the host (``.m.pt.tmp-HOST-PID``): only this
  host's files of dead processes are removed, others (and the old form) only after 24 h,
  and only once the run goes on.
* Each improving epoch hashed the previous checkpoint again for ``replaces_sha256`` (a full
  read of a multi-GB file); the digest is now remembered across the rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from cli_runner import cli, error_line
from cli_runner import tiny_train_argv as _train
from dead_process import dead_pid


def leftovers(folder, out_name="m.pt"):
    """Temporary files a killed save of ``out_name`` left: this host's of a dead process,
    another host's written just now, the old form's just now, another host's 25 h ago."""
    from napari_sam.training.checkpoint import host_tag

    pid = dead_pid()
    made = {
        "ours_dead": folder / f".{out_name}.tmp-{host_tag()}-{pid}",
        "state_ours_dead": folder / f".m.train-state.pt.tmp-{host_tag()}-{pid}",
        "other_host": folder / f".{out_name}.tmp-node17.cluster-{os.getpid()}",
        "old_form": folder / f".{out_name}.tmp-{pid}",
        "other_host_old": folder / f".{out_name}.tmp-node18-{pid}",
    }
    for path in made.values():
        path.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(made["other_host_old"], (day_ago, day_ago))
    return made


def test_temporary_names_carry_a_safe_short_host_name(tmp_path, monkeypatch):
    import socket

    from napari_sam.training import checkpoint

    monkeypatch.setattr(socket, "gethostname", lambda: "gpu-node-12.lab/x y")
    from napari_sam.io.dead_temporaries import pid_namespace

    ns = pid_namespace()
    assert checkpoint.temporary_path(tmp_path / "m.pt").name == (
        f".m.pt.tmp-gpu_node_12.lab_x_y-{os.getpid()}" + (f"-{ns}" if ns else ""))
    long = "n" * 40 + "-x"
    monkeypatch.setattr(socket, "gethostname", lambda: long)
    tag = checkpoint.host_tag()
    assert tag == "n" * 15 + "_" + hashlib.sha1(long.encode()).hexdigest()[:8]


def test_only_this_hosts_dead_temporaries_and_day_old_foreign_ones_are_removed(tmp_path):
    from napari_sam.training.checkpoint import remove_dead_temporaries

    made = leftovers(tmp_path)
    gone = remove_dead_temporaries(tmp_path / "m.pt")
    assert sorted(gone) == sorted(made[k] for k in ("ours_dead", "state_ours_dead",
                                                    "other_host_old"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        made[k].name for k in ("other_host", "old_form"))


@pytest.fixture
def trained(tmp_path, samples, tiny_model, capsys, offline_cli):
    """``m.pt`` and ``m.json`` of a training run in ``tmp_path``, and its argv."""
    out = tmp_path / "m.pt"
    argv = _train(samples, samples / "ground_truth", out, tiny_model)
    assert cli(argv, capsys)[0] == 0, capsys.readouterr().err
    return out, argv


def test_a_refused_train_removes_no_temporary_file(trained, tmp_path, capsys):
    """Exit 2 (m.pt exists, no --overwrite): every temporary file stays (was: this host's
    and, with no process of their id here, other nodes' were removed first)."""
    out, argv = trained
    made = leftovers(tmp_path)
    rc, _, err = cli(argv, capsys)
    assert rc == 2
    assert error_line(err) == (f"napari-sam: error: {out} already exists; pass --overwrite to "
                               "replace it or choose another -o")
    assert all(p.is_file() for p in made.values())


def test_a_train_that_goes_on_removes_only_dead_temporaries_of_this_host(trained, tmp_path,
                                                                         capsys):
    out, argv = trained
    made = leftovers(tmp_path)
    rc, _, err = cli([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.json", "m.pt", made["other_host"].name, made["old_form"].name])


def test_an_interrupted_save_of_another_host_is_completed(trained, tmp_path, capsys):
    """The new checkpoint left under another host's temporary name, with the sha256 the
    metadata names, is renamed into place like one of this host."""
    out, argv = trained
    meta_path = out.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    tmp = tmp_path / ".m.pt.tmp-node17-123"
    os.replace(out, tmp)
    rc, _, err = cli([*argv, "--overwrite", "--epochs", "1"], capsys)
    assert rc == 0, err
    assert not tmp.exists()
    assert json.loads(meta_path.read_text())["replaces_sha256"] == meta["sha256"]


def test_a_rename_done_by_another_process_is_not_an_error(tmp_path, tiny_sam, monkeypatch):
    """A ``train`` of the same file started between the save's two renames completes the
    save (renames its temporary file); the save then finds it done."""
    from napari_sam.training import checkpoint

    rename = os.replace

    def finished_elsewhere(src, dst):
        rename(src, dst)
        if str(dst).endswith("m.json"):
            assert checkpoint.finish_interrupted_save(tmp_path / "m.pt") == tmp_path / "m.pt"

    monkeypatch.setattr(checkpoint.os, "replace", finished_elsewhere)
    checkpoint.save_checkpoint(tiny_sam, tmp_path / "m.pt", {"trained_by": "napari_sam test"})
    meta = json.loads((tmp_path / "m.json").read_text())
    assert hashlib.sha256((tmp_path / "m.pt").read_bytes()).hexdigest() == meta["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt"]


def test_a_second_save_does_not_hash_the_checkpoint_it_replaces(tmp_path, tiny_sam,
                                                                  monkeypatch):
    """``replaces_sha256`` is the previous checkpoint's sha256, remembered from its save
    (was: the previous checkpoint read again in full at every improving epoch)."""
    import torch

    from napari_sam.models import download
    from napari_sam.training import checkpoint

    out = tmp_path / "m.pt"
    checkpoint.save_checkpoint(tiny_sam, out, {"trained_by": "napari_sam test"})
    first = hashlib.sha256(out.read_bytes()).hexdigest()
    hashed = []
    hasher = download._hasher
    monkeypatch.setattr(download, "_hasher", lambda algorithm: hashed.append(1) or hasher(
        algorithm))
    with torch.no_grad():
        tiny_sam.mask_decoder.iou_prediction_head.layers[0].weight.add_(1.0)
    checkpoint.save_checkpoint(tiny_sam, out, {"trained_by": "napari_sam test"})
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["replaces_sha256"] == first != meta["sha256"]
    assert meta["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(hashed) == 1  # the new checkpoint only
