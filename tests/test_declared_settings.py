"""The settings a checkpoint is told to run with before it loads (the batch jobs' resume
signature: ``declared_input_smoothing``) and those loading gives it follow one rule
(``registry.declared_settings``): the checkpoint's own entries, a metadata file that
describes it over them, the demo model's where it inherits them. They differed:

* entries stored inside the checkpoint file (``{"model": ..., "input_smoothing": ...}``)
  were left out of the signature when a ``FILE.json`` describes it (loading uses them);
* a ``FILE.json`` holding a list: the signature said 0 (unreadable) while loading ignored it
  and ran the model with the demo model's settings under a note that said no metadata file
  was beside it. Loading now refuses such a file, naming it and what to do.

The dock's segment-everything thresholds before a picked checkpoint loads follow the same
rule: they were SAM's for a demo-architecture checkpoint without its FILE.json and ignored an
``"automatic"`` entry stored in the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from cli_runner import cli, error_line
from tiny_configs import SMALLEST_CNN, SMALLEST_VIT, random_sam


def _own_entries(path, config, **entries):
    """The checkpoint ``path`` in a ``{"model": state_dict, ...}`` wrapper with ``entries``
    stored beside the weights; returns ``path``."""
    torch.save({"model": random_sam(config, 0).state_dict(), **entries}, path)
    return path


@pytest.mark.parametrize("described, expected", [
    ({"note": "written by hand"}, 0.5),  # the file's own entry
    ({"input_smoothing": {"sigma": 1.0}}, 1.0),  # the metadata file's, over it
])
def test_smoothing_stored_in_the_checkpoint_counts_under_a_describing_json(tmp_path, described,
                                                                           expected):
    from napari_sam.models.registry import declared_input_smoothing, load_model

    path = _own_entries(tmp_path / "own.pt", SMALLEST_VIT, input_smoothing={"sigma": 0.5})
    (tmp_path / "own.json").write_text(json.dumps(described))
    assert load_model(path).input_smoothing == expected
    assert declared_input_smoothing(path) == expected


@pytest.mark.parametrize("config, entries", [(SMALLEST_CNN, {}),
                                             (SMALLEST_VIT, {"input_smoothing": {"sigma": 0.5}})],
                         ids=["cnn", "vit-with-own-smoothing"])
def test_a_metadata_file_holding_a_list_is_refused_by_loading_and_the_signature(
        tmp_path, config, entries):
    from napari_sam.models.registry import declared_input_smoothing, load_model

    path = _own_entries(tmp_path / "m.pt", config, **entries)
    (tmp_path / "m.json").write_text("[]")
    with pytest.raises(ValueError) as info:
        load_model(path)
    assert str(info.value) == (
        f"the metadata file {tmp_path / 'm.json'} beside m.pt holds a list, not a JSON object "
        "of the checkpoint's settings (such as {\"config\": ..., \"automatic\": ...}): correct "
        "it, or move it away to load m.pt without it")
    assert declared_input_smoothing(path) == 0.0  # (loading fails and says why)


def test_the_cli_names_a_metadata_file_holding_a_list(tmp_path, capsys, offline_cli):
    import numpy as np
    import tifffile

    path = _own_entries(tmp_path / "m.pt", SMALLEST_CNN)
    (tmp_path / "m.json").write_text('["not", "settings"]')
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((32, 32), np.uint8))
    rc, _, err = cli(["auto", tmp_path / "img.tif", "--model", path, "-o", tmp_path / "out",
                      "-q"], capsys)
    assert rc == 2
    assert error_line(err).startswith(
        f"napari-sam: error: --model {path}: cannot load it as a model: the metadata file "
        f"{tmp_path / 'm.json'} beside m.pt holds a list, not a JSON object of the "
        "checkpoint's settings")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("config, entries, beside", [
    (SMALLEST_CNN, {}, None),  # the demo's architecture, no FILE.json: the demo's settings
    (SMALLEST_VIT, {"automatic": {"pred_iou_thresh": 0.4}}, {"note": "written by hand"}),
    (SMALLEST_VIT, {"automatic": {"pred_iou_thresh": 0.4}},
     {"automatic": {"stability_score_thresh": 0.5}}),
], ids=["cnn-without-json", "own-entry-under-a-json", "json-over-own-entry"])
def test_the_dock_shows_the_thresholds_the_checkpoint_loads_with(tmp_path, config, entries,
                                                                beside):
    """What the dock's boxes show when a checkpoint is picked, before it loads
    (``annotate.model_choice.recommended_thresholds``): SAM's 0.88 / 0.95 for the first two."""
    from napari_sam.annotate.model_choice import ModelChoice, recommended_thresholds
    from napari_sam.automatic import recommended_thresholds as of_model
    from napari_sam.models.registry import load_model

    path = _own_entries(tmp_path / "m.pt", config, **entries)
    if beside is not None:
        (tmp_path / "m.json").write_text(json.dumps(beside))
    shown = recommended_thresholds(ModelChoice(str(path), "file: m.pt", is_file=True))
    assert shown == of_model(load_model(path))
    assert (shown["pred_iou_thresh"], shown["stability_score_thresh"]) != (0.88, 0.95)
