"""The bundled demo weights: stored in float16 (half the bytes in every wheel and every new git
object), loaded into a float32 model, named by the file's checksum.

A new ``demo.pt`` written by the trainer is float32; store it as docs/models.md ("Shipping a
demo model") says, or this test fails.
"""

from __future__ import annotations

import json

import pytest
import torch

from napari_sam.models.registry import file_digest, load_model, where

DEMO = where("demo")

pytestmark = pytest.mark.skipif(not DEMO.is_file(),
                                reason=f"the demo model {DEMO} is not installed")


def test_demo_weights_are_stored_in_float16_and_the_sidecar_names_the_file():
    sd = torch.load(DEMO, map_location="cpu", weights_only=True)
    dtypes = {v.dtype for v in sd.values() if v.is_floating_point()}
    assert dtypes == {torch.float16}, (
        f"{DEMO} stores {dtypes}: store the demo weights in float16 (docs/models.md, "
        "'Shipping a demo model')")
    side = json.loads(DEMO.with_suffix(".json").read_text(encoding="utf-8"))
    assert side["sha256"] == file_digest(DEMO)
    assert side["size"] == DEMO.stat().st_size
    assert side["weights_dtype"] == "float16"


def test_demo_model_loads_in_float32_with_the_files_checksum_as_its_id():
    model = load_model("demo")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # + the input smoothing its sidecar asks for (what the model sees depends on it)
    assert model.model_id == f"demo:{file_digest(DEMO)[:12]}+smooth0.7"
