"""Batch runs after session 32's cluster-and-large-data walk-through: an input replaced while
its job runs (acquisition software writes a file, then renames it over the old one) gave
labels of the old data with the new file's fingerprint in the output metadata, marked
complete, so every rerun skipped it. Now the job fails, says why, writes nothing and keeps
what was there; a rerun computes the new file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli, md5s


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in offline_cli's surroundings (tests/conftest.py)."""


def _replace_input_when_the_job_starts(monkeypatch, path, new):
    """Rename ``new`` (an array) over ``path`` once the job has started (after its output was
    marked partial), before the runner reads it."""
    import napari_sam.batch.runners as R

    done = []

    def wrap(real):
        def runner(job, ctx, model):
            if not done:
                tmp = path.with_name(".incoming.tif")
                tifffile.imwrite(tmp, new)
                tmp.replace(path)
                done.append(job.input)
            return real(job, ctx, model)
        return runner

    for command in list(R.RUNNERS):
        monkeypatch.setitem(R.RUNNERS, command, wrap(R.RUNNERS[command]))
    return done


@pytest.mark.parametrize("command", ["auto", "embed", "segment"])
def test_an_input_replaced_during_its_job_is_not_taken_as_done(tmp_path, tiny_model, capsys,
                                                               monkeypatch, command):
    from stacks import blob_stack

    data = tmp_path / "data"
    data.mkdir()
    path = data / "x.tif"
    tifffile.imwrite(path, blob_stack(z=6))
    new = blob_stack(z=5, seed=5)
    out = tmp_path / "out"
    argv = [command, str(path), "-o", str(out), "--model", str(tiny_model), "--device", "cpu",
            "-q"]
    if command == "segment":
        csv = tmp_path / "clicks.csv"
        csv.write_text("file,slice,row,col,label,object\nx.tif,1,20,20,1,1\n")
        argv += ["--prompts", str(csv)]
    replaced = _replace_input_when_the_job_starts(monkeypatch, path, new)
    rc, so, err = cli(argv, capsys)
    assert replaced and rc == 1, so + err
    said = so + err
    assert ("x.tif changed while it was being read (a file still being written or replaced "
            "during the run): nothing was written for it; rerun when the file is complete"
            ) in said, said
    output = next(iter(out.glob("x*")), None)
    sidecar = None if output is None else out / f"{output.name}.json"
    if sidecar is not None and sidecar.exists():
        assert json.loads(sidecar.read_text())["status"] != "complete"
    before = md5s(path)

    rc, so, err = cli(argv, capsys)  # (the file is replaced once only)
    assert rc == 0, so + err
    assert md5s(path) == before  # the input is never touched
    if command != "embed":
        labels = tifffile.imread(out / "x_labels.tif")
        assert labels.shape == new.shape  # the new file's, not the old one's (6 slices)
    rc, so, err = cli([a for a in argv if a != "-q"], capsys)  # the per-file line
    assert rc == 0 and "skipped" in so + err, so + err


@pytest.mark.parametrize("planes", [3, 4])
def test_a_stack_of_colour_pages_is_said_to_be_read_so(tmp_path, tiny_model, capsys, planes):
    """A (2, 4, Y, X) uint16 TIFF without axes metadata is stored by tifffile as 2 pages of 4
    colour samples: it was segmented as 2 RGBA slices (the 4th plane dropped as alpha) with
    no note, where the 2D case had one. The note names the way out (--axes ZCYX --channel N),
    and that way segments one plane."""
    rng = np.random.default_rng(0)
    path = tmp_path / "planes.tif"
    tifffile.imwrite(path, rng.integers(0, 999, (2, planes, 48, 40)).astype(np.uint16))
    argv = ["auto", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
            "--device", "cpu"]
    rc, so, err = cli(argv, capsys)
    assert rc == 0, so + err
    alpha = ", the 4th dropped as alpha" if planes == 4 else ""
    assert ("napari-sam: note: planes.tif: read as 2 slices of colour images (each of the "
            f"file's 2 pages stores {planes} planes as colour samples, read as red, green, "
            f"blue{alpha}); if the planes are channels (stains), rerun with --axes ZCYX "
            f"--channel N (0 to {planes - 1})") in err, err
    rc, so, err = cli([*argv, "--axes", "ZCYX", "--channel", "1", "--overwrite"], capsys)
    assert rc == 0 and "colour images" not in err, err
    assert tifffile.imread(tmp_path / "out" / "planes_labels.tif").shape == (2, 48, 40)


def _photo(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """(150, 200, 3) uint8 "underwater" photo: three orange discs (fish) on a blue-green
    gradient, with noise; and the discs' (150, 200) masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:150, :200]
    img = np.stack([20 + 0 * yy, 60 + yy // 3, 120 + xx // 3], -1).astype(float)
    discs = [(yy - cy) ** 2 + (xx - cx) ** 2 < 18 ** 2 for cy, cx in ((40, 50), (100, 150),
                                                                      (75, 100))]
    for m in discs:
        img[m] = (230, 140, 40)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8), discs


def test_a_folder_of_photos_is_segmented_and_rerun_skips_it(tmp_path, capsys):
    """Underwater users' PNG and JPEG photos: the command line refused them ("holds no images
    (.tif, ...)"; by name: "not a supported image type") while the dock took them (session
    32's walk-through). They are read as stored (RGB, RGBA, palette, grey, 16-bit grey); the
    --preview PNGs written beside them are never taken as inputs on a rerun."""
    from PIL import Image

    img, discs = _photo()
    folder = tmp_path / "dive"
    folder.mkdir()
    Image.fromarray(img).save(folder / "fish.jpg", quality=92)
    Image.fromarray(img).save(folder / "fish_png.png")
    Image.fromarray(np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])).save(
        folder / "fish_rgba.png")
    Image.fromarray(img).convert("P").save(folder / "fish_palette.png")
    Image.fromarray(img[..., 0].astype(np.uint16) * 200).save(folder / "fish16.png")
    before = md5s(*sorted(folder.iterdir()))
    argv = ["auto", str(folder), "-o", str(folder), "--model", "demo", "--device", "cpu",
            "--preview"]
    rc, so, err = cli(argv, capsys)
    assert rc == 0, so + err
    names = ("fish", "fish_png", "fish_rgba", "fish_palette", "fish16")
    for name in names:
        labels = tifffile.imread(folder / f"{name}_labels.tif")
        assert labels.shape == (150, 200)
        for disc in discs:  # each fish found as one object
            ids, counts = np.unique(labels[disc], return_counts=True)
            best = ids[counts.argmax()]
            assert best > 0 and ((labels == best) & disc).sum() / ((labels == best) | disc
                                                                   ).sum() >= 0.8, name
        assert (folder / f"{name}_labels.png").is_file()
    assert md5s(*(folder / n for n in before)) == before
    rc, so, err = cli(argv, capsys)
    assert rc == 0 and so.count("skipped") >= len(names), so + err
    assert "_labels.png" not in so.replace(".tif", "")  # previews are no inputs


def test_a_damaged_picture_fails_with_its_reason(tmp_path, tiny_model, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really")
    rc, so, err = cli(["auto", str(bad), "-o", str(tmp_path / "out"), "--model",
                       str(tiny_model), "--device", "cpu", "-q"], capsys)
    assert rc == 1
    assert "broken.png': not a readable PNG picture (" in so + err
    assert "Check that it opens in an image viewer and save it again" in so + err


def test_previews_and_report_plots_beside_outputs_are_no_inputs(tmp_path):
    """A folder holding photos and napari-sam's own PNGs (the --preview of an output, a
    `napari-sam report` plot): only the photos are inputs; a PNG named like a preview without
    the output beside it is a photo."""
    from PIL import Image

    from napari_sam import io as nio
    from napari_sam.batch.inputs import collect_inputs

    img, _ = _photo()
    for name in ("a.png", "a_labels.png", "a_labels.tif.trace.png", "b_labels.png"):
        Image.fromarray(img).save(tmp_path / name)
    tifffile.imwrite(tmp_path / "a_labels.tif", np.zeros((150, 200), np.uint16))
    nio.write_json_atomic(nio.output_metadata_path(tmp_path / "a_labels.tif"),
                          {"format": nio.OUTPUT_METADATA_FORMAT, "status": "complete"})
    assert [p.name for p in collect_inputs([tmp_path])] == ["a.png", "b_labels.png"]


def test_a_low_scoring_click_on_a_tiled_image_gets_the_docks_hint(tmp_path, capsys):
    """A click deep inside an object larger than a tile gives a sliver (the tiles around it
    see no edge): the dock says so and suggests a box; `segment` said nothing (session 32's
    walk-through: a fish of 22,700 px came back as 1,314 px, score 0.35)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:700, :700]
    img = 200 + rng.normal(0, 20, (700, 700))
    img[(yy - 350) ** 2 + (xx - 350) ** 2 < 230 ** 2] += 1500  # larger than a 256 px window
    img[(yy - 80) ** 2 + (xx - 80) ** 2 < 30 ** 2] += 1500
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, img.astype(np.uint16))
    csv = tmp_path / "clicks.csv"
    csv.write_text("slice,row,col,label,id\n0,350,350,1,1\n0,80,80,1,2\n")
    rc, so, err = cli(["segment", str(path), "-p", str(csv), "-o", str(tmp_path / "out"),
                       "--model", "demo", "--device", "cpu"], capsys)
    assert rc == 0, so + err
    meta = json.loads((tmp_path / "out" / "big_labels.tif.json").read_text())
    score = {o["id"]: o["score"] for o in meta["objects"]}
    assert score[1] < 0.5 <= score[2]  # measured 0.25 and 0.96
    assert (f"napari-sam: note: big.tif: the mask of object 1 ({score[1]:.2f}) scores low on "
            "the clicked slice in a tiled image (windows of 256 px): an object larger than a "
            "tile gives a sliver there; give a box over all of it instead") in err, err
    assert "object 2" not in err


@pytest.mark.parametrize("command", ["auto", "segment"])
def test_an_input_replaced_while_its_output_is_written_is_computed_again(
        tmp_path, tiny_model, capsys, monkeypatch, command):
    """The output metadata records the input as it was when the job started reading it, so
    an input replaced while the labels are written (after the check) is recomputed by the
    next run (the reviewer's race: it was recorded as the new file and skipped for good)."""
    import napari_sam.io as nio
    from stacks import blob_stack

    path = tmp_path / "x.tif"
    tifffile.imwrite(path, blob_stack(z=6))
    new = blob_stack(z=5, seed=5)
    reals = {name: getattr(nio, name) for name in ("write_labels", "write_labels_stream")}

    def replacing(name):
        def writing(*args, **kwargs):
            tmp = tmp_path / ".incoming.tif"
            tifffile.imwrite(tmp, new)
            tmp.replace(path)
            for n, f in reals.items():  # once
                monkeypatch.setattr(nio, n, f)
            return reals[name](*args, **kwargs)
        return writing

    for name in reals:  # (auto writes a stack's propagated labels whole, else streamed)
        monkeypatch.setattr(nio, name, replacing(name))
    argv = [command, str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
            "--device", "cpu"]
    if command == "segment":
        csv = tmp_path / "clicks.csv"
        csv.write_text("slice,row,col,label,id\n1,20,20,1,1\n")
        argv += ["--prompts", str(csv)]
    rc, so, err = cli(argv, capsys)
    assert rc == 0, so + err
    assert tifffile.imread(tmp_path / "out" / "x_labels.tif").shape[0] == 6  # the old data
    rc, so, err = cli(argv, capsys)
    assert rc == 0 and "1 done (1 replaced an earlier output), 0 skipped" in so, so + err
    assert "; recomputed: the input changed)" in err
    assert tifffile.imread(tmp_path / "out" / "x_labels.tif").shape == new.shape


def test_a_preview_never_replaces_an_input_photo(tmp_path, tiny_model, capsys):
    """`auto ph -o ph --suffix "" --preview` on ph/a.png: its labels a.tif and its preview
    a.png, the input itself (the reviewer's catch: the photo was replaced). Refused before
    any work; without --preview the photo stays an input on a rerun."""
    from PIL import Image

    img, _ = _photo()
    folder = tmp_path / "ph"
    folder.mkdir()
    Image.fromarray(img).save(folder / "a.png")
    before = md5s(folder / "a.png")
    base = ["auto", str(folder), "-o", str(folder), "--suffix", "", "--model",
            str(tiny_model), "--device", "cpu"]
    rc, so, err = cli([*base, "--preview"], capsys)
    assert rc == 2, so + err
    assert (f"the --preview of {folder / 'a.png'} would be {folder / 'a.png'}, which is an "
            "input of this batch") in err, err
    assert md5s(folder / "a.png") == before and not (folder / "a.tif").exists()
    rc, so, err = cli(base, capsys)
    assert rc == 0 and (folder / "a.tif").is_file(), so + err
    rc, so, err = cli(base, capsys)
    assert rc == 0 and "skipped" in so, so + err  # a.png is still an input (not a preview)
    assert md5s(folder / "a.png") == before


def test_a_hyperstack_whose_metadata_names_its_channels_gets_only_the_channels_note(
        tmp_path, tiny_model, capsys):
    """An ImageJ ZCYX file with 3 channels is no stack of colour pages: only its own note
    (the channels read as RGB, --channel N) is said (the reviewer's catch: both were)."""
    path = tmp_path / "hyper.tif"
    rng = np.random.default_rng(1)
    tifffile.imwrite(path, rng.integers(0, 999, (4, 3, 40, 40)).astype(np.uint16),
                     imagej=True, metadata={"axes": "ZCYX"})
    rc, so, err = cli(["auto", str(path), "-o", str(tmp_path / "out"), "--model",
                       str(tiny_model), "--device", "cpu"], capsys)
    assert rc == 0, so + err
    assert "its 3 channels (axes ZCYX) are read as the red, green and blue" in err
    assert "slices of colour images" not in err


def test_large_and_one_bit_pictures_are_read(tmp_path):
    """A picture over Pillow's "decompression bomb" limit (2 x 89 Mpx) failed with
    DecompressionBombError and no next step, though large images are what tiling is for;
    a 1-bit PNG became 3-channel RGB where napari shows it grey (the reviewer's catches)."""
    import warnings

    from PIL import Image

    from napari_sam.io import read_image

    big = tmp_path / "mosaic.png"
    Image.fromarray(np.zeros((13500, 13500), np.uint8)).save(big)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(big).data.shape == (13500, 13500)
    bits = tmp_path / "mask.png"
    Image.fromarray(np.eye(40, 50, dtype=bool)).save(bits)
    img = read_image(bits)
    assert img.data.shape == (40, 50) and img.data.dtype == np.uint8 and img.axes == "YX"
    assert np.array_equal(img.data > 0, np.eye(40, 50, dtype=bool))
