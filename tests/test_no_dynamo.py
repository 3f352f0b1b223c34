"""Building or running any model never imports ``torch._dynamo`` or triton (issue #22).

On a Mesa/llvmpipe display, importing triton (which ``torch._dynamo`` does on CUDA builds)
loads a second copy of LLVM next to Mesa's and napari segfaults on the first click. Random
initialisers under ``torch.device("meta")`` were the path in: they run through PyTorch's
prims, which import ``torch._dynamo``.

The check runs in a fresh interpreter. CI's CPU torch has no triton, so a fake ``triton``
package is put first on ``sys.path``: it records its own import in a file, so the test fails
wherever the code would import triton, on any torch build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

FAKE_TRITON = '''
import os
with open(os.environ["FAKE_TRITON_MARKER"], "a") as fh:
    import traceback
    fh.write("".join(traceback.format_stack()))
__version__ = "0.0.0"
'''

SCRIPT = r'''
import os, sys
import numpy as np
import torch

import napari_sam as ns
from napari_sam.models import SamConfig, build_sam, sam_from_state_dict
from napari_sam.models.registry import ModelSpec, file_digest, register
from napari_sam.volume import SlicePrompt
from tiny_configs import TINY_VIT

tmp = sys.argv[1]
os.environ["NAPARI_SAM_CACHE_DIR"] = os.path.join(tmp, "cache")
torch.manual_seed(0)
cfg = SamConfig(**TINY_VIT)

# a checkpoint in Meta's format (plain state_dict) and in micro-sam's wrapper
tiny = build_sam(cfg)
official = os.path.join(tmp, "sam_tiny.pth")
torch.save(tiny.state_dict(), official)
wrapped = os.path.join(tmp, "microsam_tiny.pt")
torch.save({"model_state": tiny.state_dict(), "optimizer_state": {}}, wrapped)
# a registered name downloaded from a file:// URL into the cache
from pathlib import Path
register(ModelSpec(name="tiny_download", architecture="vit_b", url=Path(official).as_uri(),
                   sha256=file_digest(official), size=os.path.getsize(official),
                   filename="tiny_download.pth", description="test", source="test"))

models = {
    "demo": lambda: ns.load_model("demo"),
    "tiny_vit_config": lambda: build_sam(cfg),
    "tiny_vit_state_dict": lambda: sam_from_state_dict(tiny.state_dict()),
    "official_checkpoint_file": lambda: ns.load_model(official),
    "microsam_checkpoint_file": lambda: ns.load_model(wrapped),
    "registry_download": lambda: ns.load_model("tiny_download"),
    "vit_b_config": lambda: build_sam("vit_b"),  # built only: a 1024 px encoder is slow here
}
rng = np.random.default_rng(0)
image = rng.integers(0, 255, (48, 56)).astype(np.uint8)
image[12:30, 14:34] = 250
stack = np.stack([image] * 4)
ran = []
for name, make in models.items():
    model = make()
    bad = [m for m in ("torch._dynamo", "triton") if m in sys.modules]
    assert not bad, f"building {name} imported {bad}"
    if name == "vit_b_config":
        continue
    pred = ns.Predictor(model, device="cpu")
    pred.set_image(image)
    masks, scores, _ = pred.predict(points=[[20, 24]], labels=[1])
    assert masks.shape == (3, 48, 56)
    auto = ns.segment_everything(image, model, points_per_side=4, device="cpu")
    emb = ns.embed(stack, model, device="cpu", store=os.path.join(tmp, name + ".zarr"))
    res = ns.segment_volume(emb, {1: [SlicePrompt(1, points=[[20, 24]])]})
    assert res.labels.shape == stack.shape
    auto3d = ns.segment_everything(emb, points_per_side=4)
    bad = [m for m in ("torch._dynamo", "triton") if m in sys.modules]
    assert not bad, f"running {name} imported {bad}"
    ran.append(name)
print("RAN", ",".join(ran))
'''


@pytest.mark.timeout(600)
def test_models_never_import_dynamo_or_triton(tmp_path):
    fake = tmp_path / "fake_site"
    (fake / "triton").mkdir(parents=True)
    (fake / "triton" / "__init__.py").write_text(FAKE_TRITON)
    marker = tmp_path / "triton_imported.txt"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(fake), str(TESTS), env.get("PYTHONPATH", "")])
    env["FAKE_TRITON_MARKER"] = str(marker)
    env.setdefault("OMP_NUM_THREADS", "1")
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(work)],
        capture_output=True, text=True, timeout=580, env=env,
    )
    assert not marker.exists(), "triton was imported:\n" + marker.read_text()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    ran = out.stdout.strip().splitlines()[-1]
    assert ran == (
        "RAN demo,tiny_vit_config,tiny_vit_state_dict,official_checkpoint_file,"
        "microsam_checkpoint_file,registry_download"
    )


def test_fake_triton_is_detected(tmp_path):
    """The fake package does catch an import of triton (so the test above can fail)."""
    fake = tmp_path / "fake_site"
    (fake / "triton").mkdir(parents=True)
    (fake / "triton" / "__init__.py").write_text(FAKE_TRITON)
    marker = tmp_path / "m.txt"
    env = dict(os.environ, PYTHONPATH=str(fake), FAKE_TRITON_MARKER=str(marker))
    code = textwrap.dedent("""
        from torch.utils._triton import has_triton_package
        assert has_triton_package()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert marker.exists()
