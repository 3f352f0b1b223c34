"""The demo model's synthetic stream: a saved stream state rebuilds the same pool and goes
on with the same scenes (what ``python -m napari_sam.training.demo --resume`` relies on)."""

from __future__ import annotations

import numpy as np
import torch

from napari_sam.training.checkpoint import load_training_state, save_training_state
from napari_sam.training.demo_data import SyntheticStream


def test_a_restored_stream_has_the_same_pool_and_continues_the_same_stream(tmp_path):
    stream = SyntheticStream(64, pool_size=6, seed=3, weights={("nuclei", 2): 1.0,
                                                               ("nuclei", 3): 1.0})
    stream.refresh(3)
    path = save_training_state(tmp_path / "s.train-state.pt", {"stream": stream.state()})
    restored = SyntheticStream(64, pool_size=6, seed=3, weights={("nuclei", 2): 1.0,
                                                                 ("nuclei", 3): 1.0},
                               state=load_training_state(path)["stream"])
    assert [it.name for it in restored.pool] == [it.name for it in stream.pool]
    for a, b in zip(restored.pool, stream.pool):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.labels_input, b.labels_input)
        assert (a.meta.get("partner") is None) == (b.meta.get("partner") is None)
    assert (restored.generated, restored.counts, restored.next_seed) == \
        (stream.generated, stream.counts, stream.next_seed)
    for s in (stream, restored):
        s.refresh(2)
    assert [it.name for it in restored.pool] == [it.name for it in stream.pool]
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert [it.name for it in restored.batch(rng_a, 4)] == [it.name for it in stream.batch(rng_b, 4)]


def test_training_state_files_hold_plain_data_only(tmp_path):
    state = {"a": [1, 2.5, "x", None, True], "t": torch.arange(3), "big": {"int": str(2**70)}}
    path = save_training_state(tmp_path / "s.pt", state)
    back = load_training_state(path)  # torch.load(weights_only=True)
    assert back["a"] == state["a"] and back["big"] == state["big"]
    torch.testing.assert_close(back["t"], state["t"])
