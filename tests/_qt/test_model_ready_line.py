"""The dock's status line after *Checkpoint file...* (helper walk-through of the data
engine): the preload's lines ("Computing SAM embeddings ...", "Click on an object ...")
replaced "Model /path/model.pt" and the promised notice that a retrained file "changed on disk
since it was loaded", so nothing named the model in use. The ready line now names the file
(as the demo model's says "[demo model]") and keeps the notice."""

from __future__ import annotations

import os
import shutil

from stacks import blob_stack


def _choose_file(widget, path):
    """Pick a checkpoint file in 'Model', as the Model box's file dialog does."""
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(path=str(path))


def test_the_ready_line_names_the_checkpoint_and_says_it_changed_on_disk(
        make_widget, tiny_model, tmp_path, qtbot):
    import torch

    ckpt = tmp_path / "my_model.pt"
    shutil.copy(tiny_model, ckpt)
    shutil.copy(f"{tiny_model}.json", f"{ckpt}.json")  # its config
    _, widget = make_widget(blob_stack(z=2), sync=False, name="img")
    c = widget.controller

    def ready():
        return c.job is None and c.ready([0]) and c.status.startswith(("Click", "The"))

    _choose_file(widget, ckpt)
    qtbot.waitUntil(ready, timeout=60_000)
    line = widget._status.text()
    assert line.startswith("Click on an object in 'img'") and line.endswith(
        "[model my_model.pt]"), line
    # retrained into the same path, picked again
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in sd.items()}, ckpt)
    stamp = ckpt.stat().st_mtime_ns + 10**9
    os.utime(ckpt, ns=(stamp, stamp))
    _choose_file(widget, ckpt)
    qtbot.waitUntil(lambda: ready() and c.status.startswith("The checkpoint"), timeout=60_000)
    line = widget._status.text()
    assert line.startswith(f"The checkpoint {ckpt} changed on disk since it was loaded (written "
                           "again?): its new weights are used, and the image is embedded "
                           "again. Click on an object in 'img'"), line
    assert line.endswith("[model my_model.pt]"), line
