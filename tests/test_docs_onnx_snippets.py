"""The code blocks of docs/onnx.md run as written, each in a fresh namespace (the block copied
into a new Python), on an export of the demo model made by the docs' own ``export_onnx`` block:
the block without napari-sam (numpy, Pillow and scipy; napari-sam blocked from import) gives
the mask of ``Predictor.predict(..., boundary="threshold")`` for the same click, on a grey,
a float, an RGB image and a thin strip, and reads a first export's ``export.json``; the
``OnnxDecoder`` block runs on its own (it used ``ns`` and ``image`` from earlier blocks: a
NameError in a fresh Python). The 12-line block is run by
tests/test_export_onnx.py::test_docs_onnxruntime_example_runs_and_matches_predictor."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

DOC = Path(__file__).resolve().parents[1] / "docs" / "onnx.md"
MASK_AGREEMENT = 0.999  # measured: identical masks


def _block(after: str) -> str:
    """The first ```python block of docs/onnx.md after the text ``after``."""
    text = DOC.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(after):], re.S).group(1)


def _replaced(code: str, old: str, new: str) -> str:
    """``code`` with its one ``old`` replaced by ``new`` (asserts there is exactly one)."""
    assert code.count(old) == 1, (old, code)
    return code.replace(old, new)


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory) -> Path:
    """The docs' first block (``ns.export_onnx("vit_b_lm", "onnx/vit_b_lm")``), run with the
    demo model in a new folder: the export folder."""
    code = _replaced(_block("# ONNX export"), '"vit_b_lm"', '"demo"')
    root = tmp_path_factory.mktemp("docs_export")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        exec(compile(code, "docs/onnx.md", "exec"), {})
    finally:
        os.chdir(cwd)
    folder = root / "onnx" / "vit_b_lm"
    assert sorted(p.name for p in folder.iterdir()) == ["decoder.onnx", "encoder.onnx",
                                                         "export.json"]
    return folder


def _image(kind: str):
    """(image, its labels): a grey uint16 150 x 200 nuclei image, a grey float32 300 x 500 one
    (shrunk to the input), an RGB uint8 90 x 60 one (enlarged: smoothed first) or a grey
    uint16 40 x 600 strip (thin: padded with its mirror image)."""
    from napari_sam.synthetic import nuclei_2d

    if kind == "thin":
        s = nuclei_2d((40, 600), seed=3)
        return s.image, s.labels
    if kind == "grey":
        s = nuclei_2d((150, 200), seed=3)
        return s.image, s.labels
    if kind == "float":
        s = nuclei_2d((300, 500), seed=5)
        return s.image.astype(np.float32) * 0.01 - 3, s.labels
    s = nuclei_2d((90, 60), seed=6)
    g = s.image.astype(np.float64)
    g = (g - g.min()) / np.ptp(g) * 255
    return np.stack([g, g * 0.5, 255 - g], -1).astype(np.uint8), s.labels


def _predictor_mask(image, click) -> np.ndarray:
    """The best of the three masks of napari-sam's PyTorch predictor (fp32, whole image, cut at
    the threshold) for one positive click at (row, col)."""
    import napari_sam as ns

    pred = ns.Predictor("demo", device="cpu", precision="fp32")
    pred.set_image(image, tiling=None)
    masks, scores, _ = pred.predict(points=[click], labels=[1], boundary="threshold")
    return masks[scores.argmax()]


def _run_block_without_napari_sam(folder: Path, image, click, cwd: Path, monkeypatch):
    """The docs' block without napari-sam, on ``image`` (written to ``cwd/image.tif``) with
    the export ``folder`` and a click at napari's (row, col) ``click``: its mask."""
    import tifffile

    code = _replaced(_block("### Without napari-sam"), '"onnx/vit_b_lm"', repr(str(folder)))
    code = _replaced(code, "row, col = 120, 80", f"row, col = {click[0]}, {click[1]}")
    monkeypatch.chdir(cwd)
    tifffile.imwrite("image.tif", image)
    scope: dict = {}
    with monkeypatch.context() as m:  # `import napari_sam` (or a submodule) fails in the block
        m.setitem(sys.modules, "napari_sam", None)
        exec(compile(code, "docs/onnx.md", "exec"), scope)
    return scope["mask"]


def _click(labels) -> list[int]:
    """napari's (row, col) of a click inside object 2 of ``labels``."""
    rows, cols = np.nonzero(labels == 2)
    return [int(np.median(rows)), int(np.median(cols))]


@pytest.mark.parametrize("kind", ["grey", "float", "rgb", "thin"])
def test_the_block_without_napari_sam_gives_the_predictors_mask(demo_export, tmp_path,
                                                                monkeypatch, kind):
    """Also on a thin strip, 40 x 600 px (the block said nothing of its mirrored padding
    since the note that gave those lines was folded into ``pp.encoder_input``: a mask of
    another object)."""
    image, labels = _image(kind)
    click = _click(labels)
    mask = _run_block_without_napari_sam(demo_export, image, click, tmp_path, monkeypatch)
    assert mask.shape == image.shape[:2] and mask.dtype == bool
    assert mask[tuple(click)]
    expected = _predictor_mask(image, click)
    assert float((mask == expected).mean()) >= MASK_AGREEMENT, (mask.sum(), expected.sum())


def test_the_block_without_napari_sam_reads_a_first_exports_json(demo_export, tmp_path,
                                                                  monkeypatch):
    """The ``export.json`` of a first ONNX export (no ``preprocessing.smoothing``: its models
    had none), on an image the resize enlarges: the block stopped at ``KeyError:
    'smoothing'`` (``pp.encoder_input`` reads it as unsmoothed); its mask is that of an
    export recording no smoothing (sigma 0)."""
    import json
    import shutil

    image, labels = _image("grey")  # 150 x 200 px: enlarged to 256
    click = _click(labels)
    exports = {}
    for name, smoothing in (("first", None), ("unsmoothed", {"sigma": 0.0})):
        folder = tmp_path / name
        shutil.copytree(demo_export, folder)
        meta = json.loads((folder / "export.json").read_text())
        del meta["preprocessing"]["smoothing"]
        if smoothing is not None:
            meta["preprocessing"]["smoothing"] = smoothing
        (folder / "export.json").write_text(json.dumps(meta))
        exports[name] = _run_block_without_napari_sam(folder, image, click, tmp_path,
                                                      monkeypatch)
    assert exports["first"][tuple(click)]
    np.testing.assert_array_equal(exports["first"], exports["unsmoothed"])


def test_the_onnx_decoder_block_runs_in_a_fresh_python(tmp_path, monkeypatch):
    import tifffile

    image, _ = _image("grey")
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite("image.tif", image)
    code = _replaced(_block("### In napari-sam: `OnnxDecoder`"), '"vit_b_lm"', '"demo"')
    scope: dict = {}
    exec(compile(code, "docs/onnx.md", "exec"), scope)
    masks, scores = scope["masks"], scope["scores"]
    assert masks.shape == (3, 150, 200)
    expected = _predictor_mask(image, [120, 80])
    assert float((masks[scores.argmax()] == expected).mean()) >= MASK_AGREEMENT


@pytest.mark.parametrize("kind", ["thin", "rgb"])
def test_encoder_input_gives_the_predictors_embedding(demo_export, kind):
    """``pp.encoder_input`` (the 12-line block's encoder input) into the exported encoder gives
    the PyTorch predictor's embedding: a 40 x 600 px strip (padded with its mirror image, not
    zeros: off by > 0.1 with zeros) and a 90 x 60 px RGB image (enlarged: the demo model's
    input smoothing first)."""
    import json

    import onnxruntime as ort

    import napari_sam as ns
    from napari_sam.preprocess import encoder_input, is_thin
    from napari_sam.synthetic import nuclei_2d

    image = nuclei_2d((40, 600), seed=3).image if kind == "thin" else _image("rgb")[0]
    meta = json.loads((demo_export / "export.json").read_text())
    x, spec = encoder_input(image, meta)
    assert x.shape == (1, 3, 256, 256) and x.dtype == np.float32
    assert spec.original_size == image.shape[:2] and is_thin(spec) == (kind == "thin")
    (emb,) = ort.InferenceSession(str(demo_export / "encoder.onnx")).run(None, {"image": x})
    pred = ns.Predictor("demo", device="cpu", precision="fp32")
    feats = pred.set_image(image, tiling=None).features.numpy()
    np.testing.assert_allclose(emb[0], feats, atol=2e-3)


def test_the_run_it_heading_counts_the_lines_of_its_block():
    """The heading said "Run it in ten lines" over a block of 15 lines."""
    heading = re.search(r"^## Run it in onnxruntime: (\d+) lines of Python$", DOC.read_text(),
                        re.M)
    assert heading is not None
    code = _block(heading.group(0))
    assert len(code.splitlines()) == int(heading.group(1))
