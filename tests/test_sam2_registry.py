"""SAM 2.1 checkpoints through napari_sam.load_model and the registry, and the errors when
a model of one family is given where the other is needed.

The checkpoints are random weights of the official Hiera-T config saved in Meta's format
(``{"model": state_dict}`` with Meta's parameter names), downloaded from file:// URLs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.models import registry as reg
from napari_sam.models.registry import ModelDownloadError, ModelSpec
from napari_sam.models.sam2 import SAM2_CONFIGS, Sam2Model

pytestmark = pytest.mark.timeout(300)

SAM2_NAMES = ("sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus",
              "sam2.1_hiera_large")


def meta_format(model: torch.nn.Module) -> dict:
    """Our state dict under Meta's names (the two-way transformer's MLPs differ)."""
    return {k.replace(".mlp.lin1.", ".mlp.layers.0.").replace(".mlp.lin2.", ".mlp.layers.1.")
            if k.startswith("sam_mask_decoder.transformer.") else k: v
            for k, v in model.state_dict().items()}


def save_random_sam2(path: Path, seed: int = 0) -> Sam2Model:
    """Random Hiera-T weights saved as Meta's sam2.1_hiera_tiny.pt is laid out."""
    torch.manual_seed(seed)
    model = Sam2Model(SAM2_CONFIGS["sam2.1_hiera_tiny"])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": meta_format(model)}, path)
    return model


@pytest.fixture(scope="module")
def sam2_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    model = save_random_sam2(path)
    return path, model.state_dict()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(reg.CACHE_ENV, str(folder))
    return folder


def test_the_registry_lists_metas_four_sam2_checkpoints_with_checksums():
    rows = {r["name"]: r for r in reg.list_models()}
    sizes = (156_008_466, 184_416_285, 323_606_802, 898_083_611)
    for name, size in zip(SAM2_NAMES, sizes):
        spec = reg.REGISTRY[name]
        assert spec.url == f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{name}.pt"
        assert spec.filename == f"{name}.pt" and spec.size == size
        assert spec.family == "sam2" and spec.architecture.startswith("hiera_")
        assert len(spec.sha256) == 64 and rows[name]["checksum"] == f"sha256:{spec.sha256}"
    assert reg.REGISTRY["sam2.1_hiera_tiny"].sha256 == (
        "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69")
    assert reg.REGISTRY["vit_b"].family == "sam1"


def test_load_model_gives_a_sam2_model_for_a_meta_checkpoint(sam2_file):
    path, state = sam2_file
    model = ns.load_model(path)
    assert isinstance(model, Sam2Model) and model.family == "sam2"
    assert model.variant == "sam2.1_hiera_tiny" and model.img_size == 1024
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.model_id == f"file:{digest[:12]}"
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert ns.load_model("demo").family == "sam1"


def test_a_metadata_file_sets_the_input_size(sam2_file, tmp_path):
    path, _ = sam2_file
    copy = tmp_path / "small_input.pt"
    copy.symlink_to(path)
    (tmp_path / "small_input.pt.json").write_text('{"image_size": 128}')
    model = ns.load_model(copy)
    assert model.img_size == 128 and model.embedding_size == 8
    (tmp_path / "small_input.pt.json").write_text('{"image_size": 100}')
    with pytest.raises(ValueError, match="image_size must be a multiple of 32 >= 64, got 100"):
        ns.load_model(copy)


def test_a_registered_sam2_checkpoint_downloads_verifies_and_loads(sam2_file, cache,
                                                                   monkeypatch):
    path, state = sam2_file
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = ModelSpec(name="tiny_sam2", architecture="hiera_t", url=path.as_uri(),
                     sha256=digest, size=path.stat().st_size, filename="tiny_sam2.pt",
                     description="test", source="test")
    monkeypatch.setitem(reg.REGISTRY, spec.name, spec)
    model = ns.load_model("tiny_sam2")
    assert isinstance(model, Sam2Model) and model.model_id == f"tiny_sam2:{digest[:12]}"
    assert (cache / "tiny_sam2.pt").read_bytes() == path.read_bytes()
    assert reg.verify("tiny_sam2") and reg.list_models()[-1]["cached"] is not None


def test_the_official_entry_refuses_a_file_with_another_checksum(sam2_file, cache):
    path, _ = sam2_file  # random weights: not Meta's file, so its hash differs
    with pytest.raises(ModelDownloadError) as err:
        reg.fetch("sam2.1_hiera_tiny", progress=False, url=path.as_uri())
    assert "does not match" in str(err.value) or "instead of" in str(err.value)
    assert "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69" in str(err.value)
    assert not (cache / "sam2.1_hiera_tiny.pt").exists()


def test_a_sam2_model_where_sam1_is_needed_names_the_problem(sam2_file):
    path, _ = sam2_file
    model = ns.load_model(path)
    expected = (r"needs a SAM 1 model, but this is a SAM 2\.1 checkpoint \(sam2\.1_hiera_tiny\);"
                r" use method='sam2' \(napari_sam\.sam2_volume\.segment_volume_sam2; CLI: napari-sam "
                r"segment --method sam2\)")
    with pytest.raises(ValueError, match=r"^embed \(per-slice SAM 1 embeddings for "
                       r"segment_volume\) " + expected):
        ns.embed(np.zeros((3, 32, 32), np.uint8), model)
    with pytest.raises(ValueError, match="^embed .*" + expected):
        ns.embed(np.zeros((3, 32, 32), np.uint8), path)
    with pytest.raises(ValueError, match=r"^training \(napari_sam\.train\) " + expected):
        labels = np.zeros((2, 64, 64), np.uint16)
        labels[:, 10:30, 10:30] = 1
        ns.train(np.zeros((2, 64, 64), np.uint8), labels, model=model, out=None, epochs=1)
    pytest.importorskip("onnx", reason="the onnx extra is not installed: ONNX export untested")
    from napari_sam.export.onnx_export import export_onnx

    # the export's own advice, not the propagation one of the calls above (session 27)
    with pytest.raises(ValueError, match=r"^This is a SAM 2\.1 checkpoint \(sam2\.1_hiera_tiny\)"
                       r"\. ONNX export writes SAM 1 models only") as err:
        export_onnx(model, path.parent / "x.onnx")
    assert "method='sam2'" not in str(err.value)
    from napari_sam.export import OnnxDecoder

    # the decoder the ONNX backend runs: the same refusal (an AttributeError on prompt_encoder)
    with pytest.raises(ValueError, match=r"^This is a SAM 2\.1 checkpoint .* ONNX export writes "
                       r"SAM 1 models only"):
        OnnxDecoder.for_model(model)


def test_a_sam1_model_given_to_segment_volume_sam2_names_the_problem():
    from napari_sam.sam2_volume import segment_volume_sam2

    with pytest.raises(ValueError, match=r"^segment_volume_sam2 needs a SAM 2\.1 model, but "
                       r"this is a SAM 1 model \(demo\); use segment_volume / method='sam1' "
                       r"with it, or a SAM 2\.1 checkpoint such as sam2\.1_hiera_tiny"):
        segment_volume_sam2(np.zeros((3, 32, 32)), {1: {"slice": 0, "points": [[5, 5]]}},
                            "demo")
