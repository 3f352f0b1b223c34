"""A notebook's Interrupt (or Ctrl+C) during ``widget.wait()`` cancels the dock's job: it ran
on to its end and its result was applied after the user had stopped it."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sam_qt_helpers import canvas_click, use_predictor

from stacks import blob_stack


def test_interrupting_wait_cancels_the_running_job(make_widget, tiny_predictor, monkeypatch):
    import napari_sam.volume as volume

    viewer, widget = make_widget(blob_stack(z=6), sync=False, preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.dims.set_point(0, 3)
    c = widget.controller
    c.live = False
    steps = []

    def slow(emb, prompts, progress=None, **kwargs):  # a long propagation, step by step
        for i in range(3000):
            steps.append(i)
            progress(i, 3000)
            if i == 5:  # the user's Interrupt, once the propagation surely runs (a timer
                os.kill(os.getpid(), signal.SIGINT)  # of 1 s fired before it on a busy
            time.sleep(0.01)  # machine: a bare KeyboardInterrupt, no job to cancel yet)
        raise AssertionError("ran to its end")

    monkeypatch.setattr(volume, "segment_volume", slow)
    canvas_click(viewer, 20, 20)
    c.propagate()
    with pytest.raises(KeyboardInterrupt, match="'Propagating through the stack' was "
                                                "cancelled; the dock is ready"):
        widget.wait()
    assert c.job is None and c.volume is None
    assert len(steps) < 1000  # stopped, not run to its end
    n = len(steps)
    time.sleep(0.3)
    assert len(steps) == n  # nothing runs on
    c.add_point(3, 44, 44)  # the dock takes the next action
    widget.wait()


def test_wait_past_its_timeout_while_torch_imports_names_the_import(make_widget):
    """No job runs yet while torch is imported: the timeout names the import (it failed with
    AttributeError on the missing job)."""
    from types import SimpleNamespace

    viewer, widget = make_widget(blob_stack(z=6), preload=False, name="blobs")
    widget._torch = SimpleNamespace(done=False, error=None)  # an import that never ends
    with pytest.raises(TimeoutError, match="^PyTorch's import still runs after 0.1 s"):
        widget.wait(timeout=0.1)
