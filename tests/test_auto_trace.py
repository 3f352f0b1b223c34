"""``auto`` records the propagation trace of the objects it propagates, as ``segment`` does,
so that ``napari-sam report out/`` says why each object of the README's main job stopped
(session 39: report only said that it needs ``segment``'s outputs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from napari_sam import synthetic as syn

BASE = ["--device", "cpu", "--threads", "1", "-q"]


@pytest.fixture
def nuclei(tmp_path):
    """A small synthetic nuclei stack (8, 96, 96), as ``napari-sam sample nuclei-3d`` writes."""
    path = tmp_path / "data" / "nuclei.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, syn.nuclei_3d((8, 96, 96), seed=4).image, imagej=True,
                     metadata={"axes": "ZYX"})
    return path


def test_auto_records_a_trace_per_object_and_report_plots_it(tmp_path, nuclei, offline_cli,
                                                             capsys):
    from napari_sam import io as nio
    from napari_sam.volume import STOP_REASONS

    out = tmp_path / "out"
    rc, _, err = cli(["auto", nuclei, "-o", out, "--model", "demo", *BASE], capsys)
    assert rc == 0, err
    labels = tifffile.imread(out / "nuclei_labels.tif")
    ids = sorted(int(v) for v in np.unique(labels) if v)
    assert len(ids) >= 3, ids
    side = json.loads(nio.output_metadata_path(out / "nuclei_labels.tif").read_text())
    trace = side["extra"]["trace"]
    assert trace["n_slices"] == labels.shape[0]
    assert [o["id"] for o in trace["objects"]] == ids  # one entry per object, its label value
    assert sorted(int(k) for k in side["extra"]["stop_reasons"]) == ids
    for obj in trace["objects"]:
        present = np.flatnonzero((labels == obj["id"]).any(axis=(1, 2))).tolist()
        assert obj["slices"] == present, obj["id"]
        assert obj["area"] == [int((labels[z] == obj["id"]).sum()) for z in present]
        assert set(obj["stops"]) == {"up", "down"}, obj
        assert all(s["reason"] in STOP_REASONS for s in obj["stops"].values()), obj
        assert obj["stops"]["down"]["slice"] == present[0]
        assert obj["stops"]["up"]["slice"] == present[-1]
        assert len(obj["annotated"]) == 1 and present[0] <= obj["annotated"][0] <= present[-1]
        assert any(v is not None for v in obj["iou"]), obj

    for target in (out, out / "nuclei_labels.tif"):
        rc, printed, err = cli(["report", target, "-q"], capsys)
        assert rc == 0, err
        png = out / "nuclei_labels.tif.trace.png"
        assert printed.splitlines()[0] == str(png), printed
        from PIL import Image

        with Image.open(png) as img:
            assert img.size[0] >= 600 and img.size[1] > 100


def test_auto_without_propagation_says_report_has_nothing_to_plot(tmp_path, nuclei,
                                                                  tiny_model, offline_cli,
                                                                  capsys):
    from cli_runner import error_line

    out = tmp_path / "flat"
    rc, _, err = cli(["auto", nuclei, "-o", out, "--model", tiny_model, "--no-propagate",
                      *BASE], capsys)
    assert rc == 0, err
    rc, _, err = cli(["report", out], capsys)
    line = error_line(err)
    assert rc == 1, err
    assert "holds 1 output of `napari-sam auto` with nothing propagated" in line, line
    assert "without --no-propagate" in line, line
    # a new folder, not --overwrite: that would replace labels corrected by hand (reviewer 158)
    assert "-o NEWDIR" in line and "--overwrite would replace labels you corrected" in line


def _trace(n_objects: int, n_slices: int = 32) -> dict:
    objects = []
    for k in range(n_objects):
        zs = list(range(k % 10, k % 10 + 6))
        objects.append({"id": k + 1, "slices": zs, "iou": [0.9] * 6, "area": [50 + z for z in zs],
                        "contrast": [10.0 - z for z in zs], "annotated": [zs[2]],
                        "stops": {"down": {"slice": zs[0], "reason": "faded"},
                                  "up": {"slice": zs[-1], "reason": "edge"}},
                        "flags": [{"slice": zs[3], "kind": "area_jump", "text": "area"}]})
    return {"format": 1, "n_slices": n_slices, "objects": objects}


def test_a_trace_of_many_objects_is_drawn_as_readable_pages(tmp_path):
    """One PNG of the README's sample (98 objects) was 900 x 14740 px without slice ticks:
    now pages of a grid of small panels, each at most 2616 px high, the stale pages of an
    earlier, longer report removed."""
    from PIL import Image

    from napari_sam.trace import PAGE_OBJECTS, render_pages, stop_summary

    png = tmp_path / "a_labels.tif.trace.png"
    pages = render_pages(_trace(2 * PAGE_OBJECTS + 5), png, title="a")
    assert pages == [png, tmp_path / "a_labels.tif.trace-2.png",
                     tmp_path / "a_labels.tif.trace-3.png"]
    for page in pages:
        with Image.open(page) as img:
            assert img.size[0] == 1200 and img.size[1] <= 2616, img.size
    with Image.open(pages[-1]) as img:  # 5 objects: two rows of panels
        assert img.size[1] < 400, img.size
        pixels = np.asarray(img.convert("RGB"))
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)
    assert red.any()  # the flagged slices' ticks
    assert stop_summary(_trace(4)) == "faded 4, edge 4"

    assert render_pages(_trace(PAGE_OBJECTS), png) == [png]  # one page now: the rest gone
    assert sorted(p.name for p in tmp_path.iterdir()) == [png.name]
    assert render_pages(_trace(3), png) == [png]  # a few objects: one row each, as before
    with Image.open(png) as img:
        assert img.size == (900, 40 + 3 * 150)


def test_segment_everything_returns_the_trace_auto_records(tmp_path, nuclei, offline_cli,
                                                          capsys):
    """A scripting user gets the trace that ``napari-sam auto`` records (session 40: the
    library's segment everything gave none): for the same stack and settings,
    ``segment_everything(..., trace=True).trace`` equals the sidecar's ``stop_reasons`` and
    ``trace``, and ``render_pages`` draws it as ``napari-sam report`` does."""
    import napari_sam as ns
    from napari_sam import io as nio
    from napari_sam.trace import render_pages

    out = tmp_path / "out"
    rc, _, err = cli(["auto", nuclei, "-o", out, "--model", "demo", *BASE], capsys)
    assert rc == 0, err
    side = json.loads(nio.output_metadata_path(out / "nuclei_labels.tif").read_text())

    res = ns.segment_everything(tifffile.imread(nuclei), "demo", device="cpu",
                                precision="fp32", trace=True)
    np.testing.assert_array_equal(res.labels, tifffile.imread(out / "nuclei_labels.tif"))
    assert len(res.trace["trace"]["objects"]) >= 3
    assert json.loads(json.dumps(res.trace)) == {k: side["extra"][k]
                                                 for k in ("stop_reasons", "trace")}
    assert ns.segment_everything(tifffile.imread(nuclei), "demo", device="cpu",
                                 precision="fp32").trace is None  # only when asked
    assert render_pages(res.trace["trace"], tmp_path / "t.png") == [tmp_path / "t.png"]


@pytest.mark.parametrize("case", ["2d", "no-propagate", "not-bool"])
def test_a_trace_without_propagation_is_refused_before_any_work(case, tiny_model):
    import napari_sam as ns

    stack = np.zeros((2, 32, 32), np.uint16) if case != "2d" else np.zeros((32, 32))
    kw = {"trace": "yes"} if case == "not-bool" else {"trace": True}
    if case == "no-propagate":
        kw["propagate"] = False
    with pytest.raises(ValueError) as err:
        ns.segment_everything(stack, str(tiny_model), device="cpu", **kw)
    assert str(err.value) == {
        "2d": "trace=True returns the propagation trace of a stack, and a 2D image is not "
              "propagated: leave trace out (result.stats counts the candidate masks each "
              "filter dropped)",
        "no-propagate": "trace=True returns the propagation trace, and propagate=False "
                        "propagates nothing: drop one of them (result.stats counts the "
                        "candidate masks each filter dropped)",
        "not-bool": "trace must be True or False, got 'yes'"}[case]
