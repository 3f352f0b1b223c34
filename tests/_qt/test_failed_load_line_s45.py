"""A model that cannot be downloaded (offline: a file:// URL with no file) while the user
moves a movie's time slider: the status line said "SAM now segments time point 1 of 5.
Click on an object ..." at once, over the line of the load under way, as if the model were
ready; once the load failed, the line names the failure and what to do, and the ready line
comes only with a model that loaded (session 45)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sam_qt_helpers import blob_movie, blob_stack, canvas_click, held_model_load, use_predictor


def _offline_model(monkeypatch, tmp_path) -> str:
    """Register the model 'offline_test', whose URL (file://) has no file. Returns it."""
    from napari_sam.models import registry

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    url = (tmp_path / "offline" / "sam.pth").as_uri()
    monkeypatch.setitem(registry.REGISTRY, "offline_test", registry.ModelSpec(
        name="offline_test", architecture="vit_b", url=url, sha256="0" * 64, size=10,
        filename="offline_test.pth", description="test", source="test"))
    return url


def test_a_failed_download_while_the_time_slider_moves(make_widget, tiny_predictor, qtbot,
                                                      monkeypatch, tmp_path):
    from napari_sam.annotate.model_choice import ModelChoice

    _offline_model(monkeypatch, tmp_path)
    movie = np.stack([blob_stack(seed=t) for t in range(5)])
    viewer, widget = make_widget(movie, name="movie", sync=False, preload=False)
    use_predictor(widget, tiny_predictor)
    viewer.dims.set_current_step(0, 3)
    c = widget.controller
    gate, entered = threading.Event(), threading.Event()
    load = c.models.load

    def held_download(choice, *args, **kwargs):  # the real download, once the test says
        entered.set()
        assert gate.wait(60), "the test never let the download go on"
        return load(choice, *args, **kwargs)

    monkeypatch.setattr(c.models, "load", held_download)
    c.set_model(ModelChoice("offline_test", "offline_test", cached=False))
    c.points_layer.add([3, 2, 20, 20])  # a click at time point 3: the download starts
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    viewer.dims.set_current_step(0, 1)  # the user scrubs while it downloads
    # not "Click on an object": the model is not there yet (it said so, as if ready)
    assert c.status == ("Time point 1 of 5 shown: SAM segments it once 'Computing SAM "
                        "embeddings' is done."), c.status
    gate.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    qtbot.wait(500)  # (what the event loop still had to say)
    failed = ("Failed: Computing SAM embeddings (loading the model 'offline_test'). The model "
              "could not be downloaded (")
    assert c.status.startswith(failed), c.status
    assert c.status.endswith("The model in use is 'tiny' again: pick 'offline_test' in "
                             "'Model' once its file is in place."), c.status
    with pytest.raises(RuntimeError, match="could not be downloaded"):
        widget.wait()  # (a script's wait() says it too)
    viewer.dims.set_point(1, 3)  # another slice: the failure stays said
    qtbot.wait(300)
    assert c.status.startswith(failed), c.status
    # the ready line comes with the model that works, at the time point shown
    viewer.dims.set_current_step(0, 2)
    widget.wait()
    assert c.status.startswith("SAM now segments time point 2 of 5. Click on an object in "
                               "'movie'"), c.status


def test_the_prompts_of_the_time_point_shown_while_a_model_loads_are_previewed_once_it_has(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    """A point clicked at time point 1, the slider moved to 3, a model picked, and the slider
    back at 1 while it loads: once loaded, the point was not previewed (no mask, the line
    'SAM now segments time point 1 of 5. Click on an object ...' over the point clicked);
    it is, as where no model loads."""
    viewer, widget = make_widget(blob_movie(5), name="movie", sync=False, preload=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_current_step(0, 1)
    widget.wait()
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    widget.wait()
    assert len(c.previews) == 1, c.status
    viewer.dims.set_current_step(0, 3)
    widget.wait()
    gate, entered = held_model_load(monkeypatch, c, tiny_predictor)
    widget.preload = True
    widget._on_preload()
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    viewer.dims.set_current_step(0, 1)  # back to the point while the model loads
    assert c.status == ("Time point 1 of 5 shown: SAM segments it once 'Computing SAM "
                        "embeddings' is done."), c.status
    gate.set()
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=30_000)
    widget.wait()
    assert len(c.previews) == 1 and c.previews[0].mask.any()
    assert c.status.startswith("SAM now segments time point 1 of 5. point object: score "), (
        c.status)
