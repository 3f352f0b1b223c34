"""Review s21 (ONNX export and tiling): a positive click far from the first one on a tiled
image is decoded where it lies (never dropped silently); partial exports never pair a part no
``export.json`` lists; SAM 2.1 names are refused before any download; ``-o ""`` is refused;
``embed`` counts tiles; ``export.json`` after partial exports tells each part's opset."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from napari_sam.export import (  # noqa: E402
    DECODER_FILE,
    ENCODER_FILE,
    METADATA_FILE,
    OnnxDecoder,
    export_onnx,
)


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """An empty model cache, one thread, float32."""


@pytest.fixture(scope="module")
def bar_predictor():
    """The demo model on an 800 x 800 image (16 windows of 256 px) holding one 24 x 700 bar."""
    import napari_sam as ns

    rng = np.random.default_rng(0)
    img = (1000 + 50 * rng.random((800, 800))).astype(np.uint16)
    img[388:412, 50:750] = 9000
    pred = ns.Predictor("demo", precision="fp32", device="cpu")
    pred.set_image(img)
    assert pred.tiled is not None and len(pred.tiled.tiling) == 16
    return pred


def _holding(tiling, row, col) -> set[int]:
    return {w.index for w in tiling.windows if bool(w.contains(row, col))}


def test_far_positive_click_on_a_tiled_image_is_decoded_where_it_lies(bar_predictor):
    pred = bar_predictor
    masks, scores, _ = pred.predict(points=[[400, 100], [400, 700]], labels=[1, 1])
    res, tiling = pred.last_tiled, pred.tiled.tiling
    # both clicks' windows are decoded (before: only the first click's, [4, 8])
    assert _holding(tiling, 400, 700) <= set(res.windows)
    assert _holding(tiling, 400, 100) <= set(res.windows)
    best = masks[int(np.argmax(scores))]
    assert best[400, 100] and best[400, 700]
    # the parts were decoded apart: the user is told the mask may be cut between them
    assert res.spread and res.cut and res.cuts.all()


def test_a_far_negative_click_alone_does_not_mark_the_prediction(bar_predictor):
    pred = bar_predictor
    pred.predict(points=[[400, 100], [400, 700]], labels=[1, 0])
    res, tiling = pred.last_tiled, pred.tiled.tiling
    assert set(res.windows) == _holding(tiling, 400, 100)
    assert not res.spread


def test_a_click_between_far_clicks_decodes_the_windows_there_too(bar_predictor):
    pred = bar_predictor
    pred.predict(points=[[400, 100], [400, 400], [400, 700]], labels=[1, 1, 1])
    tiling = pred.tiled.tiling
    want = _holding(tiling, 400, 100) | _holding(tiling, 400, 400) | _holding(tiling, 400, 700)
    assert set(pred.last_tiled.windows) == want


def _meta(folder) -> dict:
    return json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))


def test_encoder_only_export_refuses_an_unlisted_decoder_and_keeps_it(tmp_path, tiny_model,
                                                                      capsys):
    from napari_sam.cli import main

    out = tmp_path / "F"
    out.mkdir()
    (out / DECODER_FILE).write_bytes(b"another tool's decoder")
    with pytest.raises(FileExistsError, match="decoder.onnx is not listed in") as exc:
        export_onnx(tiny_model, out, decoder=False)
    assert type(exc.value).__name__ == "UnlistedPartError"
    assert main(["export", "onnx", str(tiny_model), "-o", str(out), "--encoder-only",
                 "--overwrite", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{out / DECODER_FILE} is not listed in" in err
    assert "never replaces a file it did not write (not even with --overwrite)" in err
    assert sorted(p.name for p in out.iterdir()) == [DECODER_FILE]
    assert (out / DECODER_FILE).read_bytes() == b"another tool's decoder"
    # both parts with --overwrite do not replace it either: not napari-sam's (s39)
    assert main(["export", "onnx", str(tiny_model), "-o", str(out), "--overwrite", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{out / DECODER_FILE} in the output folder was not written by a napari-sam" in err
    assert "pass --overwrite" not in err
    assert sorted(p.name for p in out.iterdir()) == [DECODER_FILE]
    assert (out / DECODER_FILE).read_bytes() == b"another tool's decoder"


def test_onnx_decoder_refuses_a_decoder_export_json_does_not_list(tmp_path, tiny_model):
    out = tmp_path / "E"
    export_onnx(tiny_model, out, decoder=False)
    (out / DECODER_FILE).write_bytes(b"not onnx")  # appeared later, not in export.json
    with pytest.raises(ValueError, match="is not listed as the decoder in"):
        OnnxDecoder(out)
    with pytest.raises(ValueError, match="this export's encoder, not its decoder"):
        OnnxDecoder(out / ENCODER_FILE)


@pytest.mark.parametrize("files", [["decoder.onnx"], "decoder.onnx", 3])
def test_onnx_decoder_names_an_export_json_whose_files_are_not_a_mapping(tmp_path, tiny_model,
                                                                         files):
    """A hand-edited export.json ('files' a list or a string) is named with what to do, not
    an AttributeError from inside the reader."""
    out = tmp_path / "F"
    export_onnx(tiny_model, out, encoder=False)
    meta = _meta(out)
    meta["files"] = files
    (out / "export.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="is not the export.json of an ONNX export.*'files' is "
                                         "a .*export the model again"):
        OnnxDecoder(out)


def test_onnx_decoder_names_an_unreadable_decoder(tmp_path, tiny_model):
    out = tmp_path / "D"
    export_onnx(tiny_model, out, encoder=False)
    (out / DECODER_FILE).write_bytes(b"truncated")
    with pytest.raises(ValueError, match="is not a readable ONNX model.*export it again"):
        OnnxDecoder(out)


def test_sam2_registry_name_is_refused_before_any_download(tmp_path, monkeypatch, capsys):
    from napari_sam.cli import main
    from napari_sam.models import registry

    def no_download(*args, **kwargs):
        raise AssertionError("a model was loaded (downloaded) before the refusal")

    monkeypatch.setattr(registry, "load_model", no_download)
    with pytest.raises(ValueError, match="^sam2.1_hiera_tiny is a SAM 2.1 model. ONNX export "
                                         "writes SAM 1 models only"):
        export_onnx("sam2.1_hiera_tiny", tmp_path / "x")
    assert main(["export", "onnx", "sam2.1_hiera_large", "-o", str(tmp_path / "y")]) == 2
    assert "sam2.1_hiera_large is a SAM 2.1 model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_an_empty_output_folder_is_refused(tmp_path, monkeypatch, capsys):
    from napari_sam.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["export", "onnx", "demo", "-o", ""])
    assert exc.value.code == 2
    assert "-o is empty; give a folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="out_dir is empty"):
        export_onnx("demo", "")
    assert list(tmp_path.iterdir()) == []


def test_export_json_after_partial_exports_names_each_parts_opset(tmp_path, tiny_model):
    out = tmp_path / "G"
    export_onnx(tiny_model, out, encoder=False, opset=18, return_single_mask=True)
    export_onnx(tiny_model, out, decoder=False, opset=17, overwrite=True)
    meta = _meta(out)
    assert meta["opsets"] == {"decoder": 18, "encoder": 17}
    assert meta["opset"] == 18  # the decoder's (before: 17, the last call's)
    assert meta["decoder_options"]["return_single_mask"] is True
    enc = tmp_path / "H"
    export_onnx(tiny_model, enc, decoder=False)
    meta = _meta(enc)
    assert meta["files"] == {"encoder": ENCODER_FILE}
    assert meta["decoder_options"] is None and meta["decoder_outputs"] is None


def test_embed_of_a_tiled_image_counts_tiles(tmp_path, tiny_model, monkeypatch):
    import tifffile

    from cli_runner import record_embedding_bars
    from napari_sam.cli import main

    bars = record_embedding_bars(monkeypatch)
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "big2d.tif", (rng.random((300, 260)) * 1000).astype(np.uint16))
    assert main(["embed", str(tmp_path / "big2d.tif"), "-o", str(tmp_path / "emb"),
                 "--model", str(tiny_model), "--device", "cpu", "-q"]) == 0
    (bar,) = bars
    # 9 windows of one slice: the bar counts tiles from the start (before: "slice", total 1)
    assert (bar.unit, bar.total) == ("tile", 9)
    assert bar.calls and all(t == 9 for _, t in bar.calls) and bar.calls[-1] == (9, 9)


def test_the_session_preview_tells_the_user_about_far_clicks():
    """What the dock shows (AnnotationSession's status line): both clicks in the preview and
    the "may be cut ... click its missing part too" message (before: only click 1, no word)."""
    from napari_sam.annotate import AnnotationSession
    from napari_sam.annotate.model_choice import model_choices
    from napari_sam.models.registry import weights_dir

    if not (weights_dir() / "demo.pt").is_file():
        pytest.skip("the bundled demo model is not installed yet")
    rng = np.random.default_rng(0)
    img = (1000 + 50 * rng.random((800, 800))).astype(np.uint16)
    img[388:412, 50:750] = 9000
    s = AnnotationSession()
    s.set_image(img, name="bar")
    s.set_model(next(c for c in model_choices() if c.is_demo))
    s.add_point(0, 400, 100)
    s.add_point(0, 400, 700)
    (p,) = s.update_preview()
    assert p.mask[400, 100] and p.mask[400, 700] and p.cut
    assert "reaches beyond the tiles around its prompts" in s.status
    assert "click its missing part too" in s.status


def test_a_finished_line_says_1_slice_and_2_objects(capsys):
    """The per-file line of `embed` on one 2D image said "1 slices"."""
    from types import SimpleNamespace

    from napari_sam.cli.batch_command import print_result

    for n, what, words in ((1, "slices", "(1 slice,"), (2, "objects", "(2 objects,"),
                           (1, "objects", "(1 object,")):
        res = SimpleNamespace(status="done", input="a.tif", output="out/a.tif", objects=n,
                              seconds=1.0, details={}, reason="")
        print_result(res, False, what)
        assert words in capsys.readouterr().err


def test_a_sam2_checkpoint_file_is_refused_with_the_exports_own_advice(tmp_path):
    """By path the message began with the propagation advice of other calls ("use
    method='sam2' ... to propagate with it, or a SAM 1 model such as vit_b or vit_b_lm";
    helper sweep, session 27)."""
    from sam2_checkpoint import save_sam2_checkpoint

    path = save_sam2_checkpoint(tmp_path / "s2.pt")
    with pytest.raises(ValueError) as err:
        export_onnx(str(path), tmp_path / "out")
    text = str(err.value)
    assert text.startswith("This is a SAM 2.1 checkpoint (") and "propagate" not in text
    assert "SAM 2.1 models cannot be exported; export a SAM 1 model such as vit_b_lm" in text
    assert not (tmp_path / "out").exists()
