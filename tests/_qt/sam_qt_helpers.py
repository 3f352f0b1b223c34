"""Helpers shared by the GUI tests (imported as a plain module: tests/ has no packages)."""

from __future__ import annotations

import numpy as np


def demo_model_path():
    from napari_sam.models.registry import weights_dir

    return weights_dir() / "demo.pt"


def use_predictor(widget, predictor, name: str = "tiny", is_demo: bool = False):
    """Make the widget use an already built predictor (no loading, no download)."""
    from napari_sam._qt.model_choice import ModelChoice

    choice = ModelChoice(name, name, is_demo=is_demo)
    widget.controller.models.put(choice, "auto", predictor)
    widget._model.addItem(choice.label, choice)
    widget._model.setCurrentIndex(widget._model.count() - 1)
    widget.controller.set_model(choice)
    return choice


def blob_stack(z=6, size=64, seed=0):
    """A small stack with two bright discs (for wiring tests with the tiny model)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(20, 3, (z, size, size)).astype(np.float32)
    img[:, (yy - 20) ** 2 + (xx - 20) ** 2 < 64] += 100
    img[:, (yy - 44) ** 2 + (xx - 44) ** 2 < 64] += 100
    return img
