"""``--tiling`` of ``napari-sam embed|auto|segment``: the note, the stores, reuse, bad values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam import batch
from napari_sam import io as nio


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """:func:`offline_cli`'s surroundings (tests/conftest.py). The tiny model's input is 128
    px, so "auto" tiles slices over 192 px."""


def _stack(path: Path, shape=(3, 300, 260), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * 1000).astype(np.uint16)
    data[:, 40:70, 50:80] += 3000
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def test_embed_tiles_large_slices_says_so_and_segment_reuses_the_store(tmp_path, tiny_model,
                                                                       capsys):
    import zarr

    from napari_sam.cli import main

    inp = _stack(tmp_path / "big.tif")
    assert main(["embed", str(inp), "-o", str(tmp_path / "emb"), "--model", str(tiny_model),
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "big.tif: tiling 300 x 260 slices in 9 windows of 128 px (halo 16)" in err
    store = tmp_path / "emb" / "big.zarr"
    group = zarr.open_group(str(store), mode="r")
    assert len(list(group["tiles"].members())) == 9 and "features" not in group
    extra = nio.read_sidecar(store)["extra"]
    assert extra["tiling"] == {"image_shape": [300, 260], "window": 128, "halo": 16}
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,slice,row,col\n1,1,55,65\n")
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}
    assert main(["segment", str(inp), "-o", str(tmp_path / "seg"), "-p", str(prompts),
                 "--model", str(tiny_model), "--device", "cpu", "--embeddings",
                 str(tmp_path / "emb"), "-q"]) == 0
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()} == stamps
    labels = nio.read_image(tmp_path / "seg" / "big_labels.tif").data
    assert labels.shape == (3, 300, 260) and set(np.unique(labels)) <= {0, 1}
    # the tiny random model's mask (its masks fill the windows, so the click is decoded in a
    # zoomed-out view, as its preview would be: the click's own pixel is not guaranteed)
    assert (labels[1] == 1).sum() > 1000
    # the same store is not reused untiled: segment --tiling off embeds in its work folder
    assert main(["segment", str(inp), "-o", str(tmp_path / "seg-off"), "-p", str(prompts),
                 "--model", str(tiny_model), "--device", "cpu", "--embeddings",
                 str(tmp_path / "emb"), "--tiling", "off", "--keep-work", "-q"]) == 0
    work = tmp_path / "seg-off" / batch.WORK_DIR / "big_labels.tif" / "embeddings.zarr"
    assert "features" in zarr.open_group(str(work), mode="r")
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()} == stamps


def test_tiling_off_and_explicit_halo(tmp_path, tiny_model, capsys):
    import zarr

    from napari_sam.cli import main

    inp = _stack(tmp_path / "big.tif")
    assert main(["embed", str(inp), "-o", str(tmp_path / "off"), "--model", str(tiny_model),
                 "--device", "cpu", "--tiling", "off"]) == 0
    assert ": tiling " not in capsys.readouterr().err
    group = zarr.open_group(str(tmp_path / "off" / "big.zarr"), mode="r")
    assert group["features"].shape[0] == 3 and "tiles" not in group
    small = _stack(tmp_path / "small.tif", shape=(2, 64, 64))
    assert main(["embed", str(small), "-o", str(tmp_path / "halo"), "--model", str(tiny_model),
                 "--device", "cpu", "--tiling", "8"]) == 0  # a halo: tiles even small slices
    assert "small.tif: tiling 64 x 64 slices in 1 windows of 128 px (halo 8)" in \
        capsys.readouterr().err
    sc = nio.read_sidecar(tmp_path / "halo" / "small.zarr")
    assert sc["parameters"]["tiling"] == 8
    assert sc["extra"]["tiling"] == {"image_shape": [64, 64], "window": 128, "halo": 8}


@pytest.mark.parametrize("value, message", [
    ("300", "the halo (300) must be >= 0 and less than half the window (256)"),
    ("512,32", "a window of 512 px is larger than the model input (256 px)"),
])
def test_a_tiling_that_does_not_fit_the_model_is_one_line_exit_2(tmp_path, value, message,
                                                                   capsys):
    from napari_sam.cli import main

    inp = _stack(tmp_path / "big.tif", shape=(2, 64, 64))
    assert main(["embed", str(inp), "-o", str(tmp_path / "o"), "--model", "demo",
                 "--tiling", value]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"napari-sam: error: --tiling {value}: ")
    assert message in lines[0]
    assert not (tmp_path / "o" / "big.zarr").exists()


@pytest.mark.parametrize("value", ["abc", "-3", "1,2,3", "256,"])
def test_a_malformed_tiling_is_a_usage_error(value, capsys):
    from napari_sam.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["segment", "x.tif", "-o", "o", "-p", "p.csv", "--tiling", value])
    assert exc.value.code == 2
    assert "invalid tiling" in capsys.readouterr().err


def test_the_option_reaches_the_context_and_its_signature():
    from napari_sam.cli.app import build_parser
    from napari_sam.cli.batch_command import batch_context

    for argv, want in ((["auto", "a.tif", "-o", "o"], "auto"),
                       (["embed", "a.tif", "-o", "o", "--tiling", "off"], None),
                       (["segment", "a.tif", "-o", "o", "-p", "p.csv", "--tiling", "256,32"],
                        (256, 32))):
        args = build_parser().parse_args(argv)
        ctx = batch_context(args, "demo")
        assert ctx.tiling == want
        assert ("tiling" in ctx.signature()) == (want != "auto")


def test_auto_passes_its_tiling_to_segment_everything(monkeypatch):
    """``auto`` hands ``--tiling`` to segment_everything's ``tiling`` argument for each slice
    (the engine's own default when it is "auto")."""
    from napari_sam import automatic
    from napari_sam.batch.auto_runner import _segment_slice

    seen = []

    def engine(image_or_embeddings, model=None, **kw):
        seen.append(kw.get("tiling", "engine default"))
        raise StopIteration

    monkeypatch.setattr(automatic, "segment_everything", engine)
    image = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    for tiling in ((256, 32), None, "auto"):
        with pytest.raises(StopIteration):
            _segment_slice(object(), (0.0, 4095.0), image, None,
                           batch.Context(command="auto", tiling=tiling), n_slices=1)
    assert seen == [(256, 32), None, "engine default"]


def test_auto_on_a_large_2d_image_counts_its_windows(tmp_path, tiny_model, capsys,
                                                     monkeypatch):
    """`auto` on a 2048 px image sat at "0 slice" for minutes and then jumped to 1/1 (a
    helper sweep): its one slice is 121 windows. The bar now counts the windows, encoded
    and then segmented, each a phase of its own (session 30: one count over both gave a
    time left of 12 s where 3.5 min were left, encoding being some 30 times faster)."""
    import napari_sam.batch.auto_runner as A
    from napari_sam.cli import main

    inp = tmp_path / "big2d.tif"
    tifffile.imwrite(inp, tifffile.imread(_stack(tmp_path / "s.tif"))[0],
                     photometric="minisblack")
    seen = []
    real = A.JobProgressBar

    class Recording(real):
        phase_name = ""

        def __call__(self, done, total):
            seen.append((self.bar.unit if self.bar is not None else None, done, total,
                         self.phase_name))
            super().__call__(done, total)

        def phase(self, name, total):
            self.phase_name = name
            super().phase(name, total)

    monkeypatch.setattr(A, "JobProgressBar", Recording)
    assert main(["auto", str(inp), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
                 "--device", "cpu", "--points-per-side", "4"]) == 0
    assert "big2d.tif: tiling 300 x 260 slices in 9 windows" in capsys.readouterr().err
    assert [p for p in dict.fromkeys(p for *_, p in seen if p)] == ["encoding", "segmenting"]
    for name in ("encoding", "segmenting"):
        counted = [(done, total) for unit, done, total, p in seen if p == name]
        assert {unit for unit, _, _, p in seen if p == name} == {"window"}
        assert {total for _, total in counted} == {9}
        assert [d for d, _ in counted] == sorted(d for d, _ in counted)  # never backwards
        assert set(range(1, 10)) <= {d for d, _ in counted}  # every window
    assert seen[-1][1:3] == (9, 9)


def test_auto_on_a_tiled_stack_counts_its_windows(tmp_path, tiny_model, monkeypatch):
    """`auto` on a stack of 2048 px slices sat at "0/20 slice" for 2.5 minutes, then moved one
    slice (121 windows) at a time (session 32's walk-through). It counts the windows
    segmented, slices x windows, never backwards, with the threads of --threads."""
    import napari_sam.batch.auto_runner as A
    from napari_sam.cli import main

    inp = _stack(tmp_path / "s.tif")
    n = tifffile.imread(inp).shape[0]
    seen = []
    real = A.JobProgressBar

    class Recording(real):
        def __call__(self, done, total):
            seen.append((self.bar.unit if self.bar is not None else None, done, total))
            super().__call__(done, total)

    monkeypatch.setattr(A, "JobProgressBar", Recording)
    assert main(["auto", str(inp), "-o", str(tmp_path / "out"), "--model", str(tiny_model),
                 "--device", "cpu", "--points-per-side", "4", "--threads", "2",
                 "--no-propagate"]) == 0
    assert {unit for unit, _, _ in seen} == {"window"}
    assert {total for _, _, total in seen} == {9 * n}
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and done[-1] == 9 * n
    assert len(set(done)) > n + 1  # between slices too, not only at their ends


def test_segment_on_a_tiled_stack_counts_its_embedding_in_tiles(tmp_path, tiny_model,
                                                                  monkeypatch):
    """`segment` (and `auto`'s propagation) embed a tiled stack window by window: the bar
    said "28/512 slice" for an 8-slice stack (a helper walk-through, session 31); it counts
    tiles, slices x windows, from the start."""
    from cli_runner import record_embedding_bars
    from napari_sam.cli import main

    bars = record_embedding_bars(monkeypatch)
    inp = _stack(tmp_path / "s.tif")
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,slice,row,col\n1,1,55,65\n")
    assert main(["segment", str(inp), "-o", str(tmp_path / "out"), "-p", str(prompts),
                 "--model", str(tiny_model), "--device", "cpu", "-q"]) == 0
    (bar,) = bars
    assert (bar.unit, bar.total) == ("tile", 3 * 9)
    assert bar.calls and {t for _, t in bar.calls} == {27} and bar.calls[-1] == (27, 27)
