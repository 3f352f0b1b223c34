"""Every sample data entry of the manifest opens in napari."""

from __future__ import annotations

import numpy as np
import pytest

KEYS = ["nuclei_3d", "em_stack", "xray_volume", "underwater_rgb"]


def test_manifest_lists_the_samples():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-sam-stacks")
    assert sorted(s.key for s in manifest.contributions.sample_data) == sorted(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_sample_opens(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-stacks", key)
    assert len(viewer.layers) == 1
    layer = viewer.layers[0]
    assert layer.data.size and np.asarray(layer.data).std() > 0
    if key == "underwater_rgb":
        assert layer.rgb and layer.data.shape[-1] == 3
    else:
        assert layer.data.ndim == 3 and layer.data.shape[0] >= 16
