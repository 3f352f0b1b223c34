"""Unit tests of napari_sam.batch: inputs, prompts files, resume states, linking, writers, locks.

These run in-process on tiny data; the end-to-end command tests are in test_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam import batch
from napari_sam import io as nio
from napari_sam.batch import auto_runner, distributed
from napari_sam.batch.linking import final_slices
from stacks import drifting_blob_slices

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny random CNN-encoder SAM checkpoint (config in a sidecar), fast on 2 CPU cores."""
    from tiny_configs import save_tiny_cnn

    return save_tiny_cnn(tmp_path_factory.mktemp("model"))


def _stack(path: Path, shape=(6, 48, 48), seed=0, **kw) -> Path:
    rng = np.random.default_rng(seed)
    z, y, x = shape
    yy, xx = np.mgrid[:y, :x]
    img = np.zeros(shape, np.uint16)
    for _ in range(3):
        cy, cx = rng.integers(10, y - 10), rng.integers(10, x - 10)
        img[:, (yy - cy) ** 2 + (xx - cx) ** 2 < 40] += 1000
    img += rng.integers(0, 50, shape, dtype=np.uint16)
    tifffile.imwrite(path, img, imagej=True, metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"},
                     resolution=(1 / 0.5, 1 / 0.5), **kw)
    return path


# ----------------------------------------------------------------------------- inputs


def test_collect_inputs_files_dirs_globs(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for n in ("b.tif", "a.tiff", "c.npy", "notes.txt", ".hidden.tif"):
        (d / n).write_bytes(b"x")
    (d / "sub").mkdir()
    (d / "sub" / "d.tif").write_bytes(b"x")
    names = [p.name for p in batch.collect_inputs([d])]
    assert names == ["a.tiff", "b.tif", "c.npy"]
    names = [p.name for p in batch.collect_inputs([d], recursive=True)]
    assert names == ["a.tiff", "b.tif", "c.npy", "d.tif"]
    # glob + duplicate file: de-duplicated, order of first appearance
    got = batch.collect_inputs([str(d / "*.tif"), d / "b.tif", d / "a.tiff"])
    assert [p.name for p in got] == ["b.tif", "a.tiff"]


def test_collect_inputs_reports_every_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(batch.BatchError) as err:
        batch.collect_inputs([tmp_path / "missing.tif", str(tmp_path / "*.nothing"),
                              tmp_path / "empty"])
    msg = str(err.value)
    assert "missing.tif" in msg and "matches no files" in msg and "holds no images" in msg


def test_collect_inputs_skips_our_outputs(tmp_path):
    img = tmp_path / "a.tif"
    out = tmp_path / "a_labels.tif"
    tifffile.imwrite(img, np.zeros((4, 4), np.uint8))
    nio.write_labels(out, np.zeros((4, 4), np.uint16), axes="YX")
    nio.write_sidecar(out, model="m", version="0", parameters={}, objects=[], input_path=img)
    assert batch.collect_inputs([tmp_path]) == [img]


def test_output_names_and_clashes(tmp_path):
    assert batch.stem_of("x/a.ome.tif") == "a"
    assert batch.stem_of("b.zarr") == "b"
    assert batch.output_path("d/a.ome.tiff", "out", "auto") == Path("out/a_labels.tif")
    assert batch.output_path("d/a.tif", "out", "embed") == Path("out/a.zarr")
    assert batch.output_path("d/a.tif", "o", "segment", suffix="_seg", fmt="ome.tif") == Path(
        "o/a_seg.ome.tif")
    ctx = batch.Context(command="auto", out_dir=tmp_path / "out")
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    with pytest.raises(batch.BatchError, match="same output"):
        batch.make_jobs([tmp_path / "x" / "a.tif", tmp_path / "y" / "a.tif"], ctx)


# ----------------------------------------------------------------------------- prompts


def test_prompts_csv(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text(textwrap.dedent("""\
        file,object_id,z,row,col,label,row0,col0,row1,col1,stop
        ,1,3,10.5,20,1,,,,,
        ,1,3,12,22,0,,,,,
        a.tif,2,0,,,,1,2,30,40,
        a.tif,2,5,,,,,,,,1
        b.tif,3,1,5,5,,,,,,
        """))
    per_file = batch.load_prompts(p)
    a = batch.prompts_for(per_file, Path("data/a.tif"))
    assert sorted(a) == [1, 2]
    assert a[1] == [{"slice": 3, "points": [[10.5, 20.0]], "labels": [1]},
                    {"slice": 3, "points": [[12.0, 22.0]], "labels": [0]}]
    assert a[2] == [{"slice": 0, "box": [1.0, 2.0, 30.0, 40.0]}, {"slice": 5, "stop": True}]
    b = batch.prompts_for(per_file, Path("b.tif"))
    assert sorted(b) == [1, 3] and b[3][0]["labels"] == [1]


@pytest.mark.parametrize(
    "text, match",
    [
        ("id,slice,row,col,colour\n1,0,1,1,red\n", "unknown column"),
        ("slice,row,col\n0,1,1\n", "needs an 'id' column"),
        ("id,slice,row,col\n1,0,abc,1\n", "line 2: row must be a number"),
        ("id,slice,row,col\n1,0.5,1,1\n", "slice must be a whole number"),
        ("id,slice,row,col\n1,0,,\n", "no point"),
        ("id,slice,row,col\n0,0,1,1\n", "line 2: object id 0 is not allowed.*0 is the background"),
        ("id,slice,row,col\n-3,0,1,1\n", "line 2: object id -3 is not allowed"),
        ("id,slice,row,col,label\n1,0,1,1,1\n2,0,1,1,7\n",
         "line 3: label 7 is not allowed: a point's label is 1 .* or 0"),
        ("id,slice,row,col\n1,-1,1,1\n", "line 2: slice -1 is negative"),
        ("id,slice,row0,col0,row1,col1\n1,0,9,9,2,2\n", "line 2: box .* is inverted"),
        ("id,slice,row,col\n1,0,1,1,5\n", "line 2: more values than columns"),
        ("id,slice,row,col,stop\n1,0,1,1,1\n", "line 2: a stop marker carries no point"),
        ("", "is empty"),
    ],
)
def test_prompts_csv_errors_name_the_line(tmp_path, text, match):
    p = tmp_path / "p.csv"
    p.write_text(text)
    with pytest.raises(batch.BatchError, match=match):
        batch.load_prompts(p)


def test_prompts_json_forms(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({
        "objects": {"1": [{"slice": 2, "points": [[5, 6]], "labels": [1]}]},
        "files": {"a.tif": {"2": {"slice": 0, "box": [0, 0, 4, 4]}}},
    }))
    got = batch.prompts_for(batch.load_prompts(p), Path("a.tif"))
    assert got == {1: [{"slice": 2, "points": [[5, 6]], "labels": [1]}],
                   2: [{"slice": 0, "box": [0, 0, 4, 4]}]}
    p.write_text(json.dumps({"3": [{"slice": 1, "points": [[1, 1]]}]}))
    assert batch.prompts_for(batch.load_prompts(p), Path("x.tif")) == {
        3: [{"slice": 1, "points": [[1, 1]], "labels": [1]}]}  # points default to label 1
    p.write_text(json.dumps([{"file": "x.tif", "id": 4, "slice": 0, "box": [0, 0, 2, 2]},
                             {"id": 5, "slice": 1, "points": [[1, 1]]}]))
    assert sorted(batch.prompts_for(batch.load_prompts(p), Path("x.tif"))) == [4, 5]
    assert sorted(batch.prompts_for(batch.load_prompts(p), Path("y.tif"))) == [5]
    p.write_text("{not json")
    with pytest.raises(batch.BatchError, match="not valid JSON"):
        batch.load_prompts(p)
    p.write_text(json.dumps({"objects": {}, "extra": 1}))
    with pytest.raises(batch.BatchError, match="unknown top-level"):
        batch.load_prompts(p)


# ----------------------------------------------------------------------------- linking


def _random_slices(seed: int, shape=(9, 40, 40)) -> np.ndarray:
    return drifting_blob_slices(seed, shape, missed=0.15)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("link", [{}, {"link_iou": 0.5, "max_gap": 0},
                                  {"link_iou": 0.1, "max_gap": 2, "min_z_extent": 3}])
def test_streaming_link_equals_automatic_link_slices(seed, link):
    """The CLI's streaming linker gives exactly what segment_everything does on a stack."""
    from napari_sam.automatic import link_slices as reference

    per_slice = _random_slices(seed)
    kw = {"link_iou": 0.25, "max_gap": 1, "min_z_extent": 1, **link}
    expected, _ = reference(per_slice, iou_threshold=kw["link_iou"], max_gap=kw["max_gap"],
                            min_z_extent=kw["min_z_extent"])
    loaded = []

    def load(z):
        loaded.append(z)
        n = int(per_slice[z].max())
        return per_slice[z], np.linspace(0.5, 1.0, n + 1)

    plan = batch.link_slices(load, len(per_slice), **kw)
    assert loaded == list(range(len(per_slice)))  # one streaming pass
    got = np.stack(list(final_slices(plan, lambda z: per_slice[z], len(per_slice))))
    np.testing.assert_array_equal(got, expected)
    assert plan.n_objects == expected.max()
    assert set(plan.scores) == set(range(1, plan.n_objects + 1))


# ----------------------------------------------------------------------------- writers


@pytest.mark.parametrize("max_id, name", [(7, "o.tif"), (70_000, "o.tif"), (3, "o.ome.tif")])
def test_write_labels_stream_matches_write_labels_metadata(tmp_path, max_id, name):
    vol = np.zeros((3, 8, 9), np.uint32)
    vol[1, 2:4, 2:5] = max_id
    meta = {"command": "auto", "n": 1}
    path = batch.write_labels_stream(tmp_path / name, iter(vol), shape=vol.shape, max_id=max_id,
                                     axes="ZYX", pixel_size=(2.0, 0.5, 0.5), metadata=meta)
    img = nio.read_image(path)
    assert img.axes == "ZYX" and img.pixel_size == (2.0, 0.5, 0.5)
    assert img.metadata["user"] == meta
    assert img.data.dtype == (np.uint16 if max_id < 65536 else np.uint32)
    np.testing.assert_array_equal(img.data, vol)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left


def test_write_labels_stream_failure_leaves_nothing(tmp_path):
    def slices():
        yield np.zeros((4, 4), np.uint16)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        batch.write_labels_stream(tmp_path / "o.tif", slices(), shape=(3, 4, 4), max_id=1,
                                  axes="ZYX")
    assert list(tmp_path.iterdir()) == []


def test_preview_png(tmp_path):
    from PIL import Image

    img = np.random.default_rng(0).integers(0, 1000, (5, 40, 60)).astype(np.uint16)
    lab = np.zeros((5, 40, 60), np.uint16)
    lab[:, 5:15, 5:20] = 1
    lab[2:, 20:30, 30:50] = 2
    path = batch.write_preview(tmp_path / "p.png", img[2], lab[2], img.max(0), lab.max(0),
                               min_side=1)  # at its own size
    rgb = np.asarray(Image.open(path))
    assert rgb.shape == (40 + 18, 60 * 2 + 6, 3)
    # outlines are coloured (not grey) and only on object borders
    panel = rgb[18:, :60].astype(int)
    colour = (np.abs(panel[..., 0] - panel[..., 1]) > 30) | (np.abs(panel[..., 1] - panel[..., 2]) > 30)
    assert colour[5, 10] and colour[9, 5] and not colour[10, 10] and not colour[35, 5]
    big = batch.write_preview(tmp_path / "big.png", np.zeros((2000, 1000)), np.zeros((2000, 1000), int),
                              max_side=500)
    assert Image.open(big).size == (250, 518)
    # small images are enlarged by a whole factor (60 px -> 5 x 60 = 300 >= 256); a title gets
    # its own line above the captions
    small = batch.write_preview(tmp_path / "small.png", img[2], lab[2], img.max(0), lab.max(0),
                                title="stack.tif: 2 objects")
    rgb = np.asarray(Image.open(small))
    assert rgb.shape == (200 + 32, 300 * 2 + 6, 3)
    up = rgb[32:, :300].astype(int)
    colour = (np.abs(up[..., 0] - up[..., 1]) > 30) | (np.abs(up[..., 1] - up[..., 2]) > 30)
    assert colour[5 * 5, 5 * 10] and not colour[5 * 10 + 2, 5 * 10 + 2]


# ----------------------------------------------------------------------------- reading


def test_slice_source_releases_memory_mapped_pages(tmp_path):
    path = _stack(tmp_path / "s.tif", shape=(6, 48, 48))
    img = nio.read_image(path, lazy=True)
    assert isinstance(img.data, np.memmap)
    src = batch.SliceSource(img.to_standard().data)
    assert src.shape == (6, 48, 48) and len(src) == 6
    s = src[2]
    assert type(s) is np.ndarray and not np.shares_memory(s, img.data)
    np.testing.assert_array_equal(s, img.data[2])
    src.release()  # no error on a read-only mapping
    np.testing.assert_array_equal(src[2], s)  # pages come back on the next read
    two_d = batch.SliceSource(np.arange(12).reshape(3, 4), expand=True)
    assert two_d.shape == (1, 3, 4) and two_d[0].shape == (3, 4) and two_d[:].shape == (1, 3, 4)
    with pytest.raises(IndexError):
        two_d[1]


# ----------------------------------------------------------------------------- state and locks


def test_output_state_transitions(tmp_path):
    inp = _stack(tmp_path / "a.tif")
    out = tmp_path / "out" / "a_labels.tif"
    out.parent.mkdir()
    sig = {"command": "auto", "p": 1}
    assert batch.output_state(out, inp, sig) == "missing"
    out.write_bytes(b"someone else's file")
    assert batch.output_state(out, inp, sig) == "foreign"
    nio.write_json_atomic(nio.sidecar_path(out), {"format": nio.SIDECAR_FORMAT, "status": "partial",
                                                  "parameters": sig})
    assert batch.output_state(out, inp, sig) == "partial"
    nio.write_labels(out, np.zeros((6, 48, 48), np.uint16), axes="ZYX", overwrite=True)
    nio.write_sidecar(out, model="m", version="0", parameters=sig, objects=[], input_path=inp)
    assert batch.output_state(out, inp, sig) == "complete"
    assert batch.output_state(out, inp, {**sig, "p": 2}) == "changed"
    assert batch.output_state(out, inp, {"command": "segment"}) == "other-command"
    with open(out, "ab") as f:  # an altered output: edited (by hand?), kept unless
        f.write(b"\0")        # --overwrite (it was recomputed, losing a user's corrections)
    assert batch.output_state(out, inp, sig) == "edited"
    nio.write_sidecar(out, model="m", version="0", parameters=sig, objects=[], input_path=inp)
    os.utime(inp, ns=(0, 0))  # the input changed
    assert batch.output_state(out, inp, sig) == "changed"


def test_output_lock_is_exclusive_across_processes(tmp_path):
    out = tmp_path / "o.tif"
    code = (
        "import sys, time; from pathlib import Path; from napari_sam.batch import OutputLock\n"
        f"lock = OutputLock(Path({str(out)!r}))\n"
        "print(lock.__enter__(), flush=True); time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "True"
        with batch.OutputLock(out) as got:
            assert got is False  # held by the other process
    finally:
        proc.kill()
        proc.wait()
    with batch.OutputLock(out) as got:  # a killed holder releases it
        assert got is True


@pytest.mark.parametrize("code, held", [("EWOULDBLOCK", True), ("EACCES", True),
                                         ("ENOLCK", False), ("ENOSYS", False)])
def test_only_a_held_lock_reads_as_busy(tmp_path, monkeypatch, caplog, code, held):
    """``flock``'s "held" answers mean busy; ENOLCK (NFS without lockd) or ENOSYS (Lustre
    without flock) mean the file system cannot lock: the job runs (it was "busy" forever)."""
    import errno
    import fcntl

    def flock(fd, op):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(fcntl, "flock", flock)
    for _ in range(2):  # the note is said once
        with batch.OutputLock(tmp_path / "o.tif") as got:
            assert got is not held
    notes = [r.getMessage() for r in caplog.records if "cannot lock" in r.getMessage()]
    assert len(notes) == (0 if held else 1)
    assert (tmp_path / ".napari-sam-work").exists() is held  # unlocked: nothing left behind


# ----------------------------------------------------------------------------- jobs in-process


def test_run_job_segment_resume_and_foreign_output(tmp_path, tiny_model_path):
    inp = _stack(tmp_path / "a.tif")
    ctx = batch.Context(command="segment", model=str(tiny_model_path), out_dir=tmp_path / "out",
                        device="cpu", quiet=True, params={"iou_threshold": 0.0, "min_area": 0})
    prompts = {"": {1: [{"slice": 2, "box": [5, 5, 30, 30]}]}}
    (job,) = batch.make_jobs([inp], ctx, prompts)
    res = batch.run_job(job, ctx)
    assert res.status == "done", res.reason
    img = nio.read_image(job.output)
    assert img.axes == "ZYX" and img.data.shape == (6, 48, 48) and img.data.dtype == np.uint16
    assert img.pixel_size == (2.0, 0.5, 0.5)
    sc = nio.read_sidecar(job.output)
    assert sc["status"] == "complete" and sc["parameters"]["command"] == "segment"
    assert [o["id"] for o in sc["objects"]] == sorted(np.unique(img.data[img.data > 0]).tolist())
    assert not (tmp_path / "out" / batch.WORK_DIR / job.output.name).exists()  # work cleaned
    mtime = job.output.stat().st_mtime_ns
    again = batch.run_job(job, ctx)
    assert again.status == "skipped" and again.reason == "complete"
    assert job.output.stat().st_mtime_ns == mtime
    # changed parameters recompute
    ctx2 = batch.Context(**{**ctx.__dict__, "params": {"iou_threshold": 0.1, "min_area": 0}})
    assert batch.run_job(job, ctx2).status == "done"
    # a file that napari-sam did not write is never replaced without --overwrite
    other = batch.Job(inp, tmp_path / "out" / "foreign.tif", job.prompts)
    other.output.write_bytes(b"precious")
    res = batch.run_job(other, ctx)
    assert res.status == "failed" and "not written by napari-sam" in res.reason
    assert other.output.read_bytes() == b"precious"


def test_run_job_failure_is_a_result_not_an_exception(tmp_path, tiny_model_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\0garbage" * 10)
    ctx = batch.Context(command="embed", model=str(tiny_model_path), out_dir=tmp_path / "out",
                        device="cpu", quiet=True)
    (job,) = batch.make_jobs([bad], ctx)
    res = batch.run_job(job, ctx)
    assert res.status == "failed" and "bad.tif" in res.reason and "\n" not in res.reason
    assert not job.output.exists()
    # a failed job leaves no "partial" sidecar for an output that does not exist
    assert not nio.output_metadata_path(job.output).exists()
    assert batch.output_state(job.output, bad, ctx.signature()) == "missing"


def test_embed_job_writes_a_reusable_store(tmp_path, tiny_model_path):
    from napari_sam.embeddings import embed

    inp = _stack(tmp_path / "a.tif")
    ctx = batch.Context(command="embed", model=str(tiny_model_path), out_dir=tmp_path / "emb",
                        device="cpu", quiet=True)
    (job,) = batch.make_jobs([inp], ctx)
    res = batch.run_job(job, ctx)
    assert res.status == "done" and res.objects == 6
    assert job.output == tmp_path / "emb" / "a.zarr" and job.output.is_dir()
    assert not any(p.name.endswith(".partial") for p in job.output.parent.iterdir())
    assert nio.is_complete(job.output, inp)
    model, loaded = batch.get_model(str(tiny_model_path), "cpu")
    assert not loaded  # the process cache kept it
    stack = batch.open_image(inp, ctx).stack
    emb = embed(stack, model, store=job.output)
    emb.compute()
    assert emb.encoder_calls == 0  # everything came from the store


# ----------------------------------------------------------------------------- dask.distributed


def _labels_of(results) -> dict[str, np.ndarray]:
    return {Path(r.input).name: np.asarray(nio.read_image(r.output).data) for r in results}


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 single-threaded worker processes, shared by the dask tests."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as c:
        yield c


@pytest.mark.slow
def test_local_cluster_matches_serial_and_loads_the_model_once_per_worker(tmp_path, cluster,
                                                                          tiny_model_path):
    inputs = [_stack(tmp_path / f"s{i}.tif", seed=i) for i in range(4)]
    prompts = {"": {1: [{"slice": 2, "box": [5, 5, 30, 30]}], 2: [{"slice": 4, "points": [[24, 24]]}]}}
    kw = dict(command="segment", model=str(tiny_model_path), device="cpu", quiet=True,
              params={"iou_threshold": 0.0, "min_area": 0})
    serial_ctx = batch.Context(out_dir=tmp_path / "serial", **kw)
    serial = batch.run_jobs(batch.make_jobs(inputs, serial_ctx, prompts), serial_ctx)
    assert [r.status for r in serial] == ["done"] * 4
    dask_ctx = batch.Context(out_dir=tmp_path / "dask", **kw)
    seen = []
    results = batch.run_jobs(batch.make_jobs(inputs, dask_ctx, prompts), dask_ctx,
                             scheduler=cluster.scheduler_address, on_result=seen.append)
    assert [r.status for r in results] == ["done"] * 4, [r.reason for r in results]
    assert len(seen) == 4 and [r.input for r in results] == [str(p) for p in inputs]
    pids = {r.pid for r in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    # each worker process loaded the model once and reused it for its other files
    assert sum(r.model_loaded for r in results) == len(pids)
    a, b = _labels_of(serial), _labels_of(results)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert a[name].max() >= 1
    for r in results:  # workers used the same atomic rule: sidecar complete, no temporaries
        assert nio.is_complete(r.output, r.input)
    assert not [p for p in (tmp_path / "dask").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_slice_blocks_on_a_cluster_match_serial(tmp_path, cluster, tiny_model_path):
    """auto and embed with --block-slices: one stack split over both workers, same results."""
    inp = _stack(tmp_path / "s.tif", shape=(5, 48, 48), seed=3)
    params = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    for command in ("auto", "embed"):
        kw = dict(command=command, model=str(tiny_model_path), device="cpu", quiet=True,
                  params=params if command == "auto" else {})
        ser = batch.Context(out_dir=tmp_path / f"{command}-serial", **kw)
        (s_res,) = batch.run_jobs(batch.make_jobs([inp], ser), ser)
        dis = batch.Context(out_dir=tmp_path / f"{command}-blocks", **kw)
        (d_res,) = batch.run_jobs(batch.make_jobs([inp], dis), dis,
                                  scheduler=cluster.scheduler_address, block_slices=2)
        assert s_res.status == d_res.status == "done", d_res.reason
        assert nio.is_complete(d_res.output, inp)
        if command == "auto":
            np.testing.assert_array_equal(nio.read_image(d_res.output).data,
                                          nio.read_image(s_res.output).data)
            assert nio.read_sidecar(d_res.output)["extra"]["resumed_slices"] == 5  # by blocks
        else:
            import zarr

            a = zarr.open_group(str(s_res.output), mode="r")
            b = zarr.open_group(str(d_res.output), mode="r")
            # same embeddings up to float rounding (batch composition and thread count differ)
            np.testing.assert_allclose(np.asarray(a["features"][:], np.float32),
                                       np.asarray(b["features"][:], np.float32), atol=5e-3)
            np.testing.assert_array_equal(np.asarray(a["slice_hash"][:]),
                                          np.asarray(b["slice_hash"][:]))


@pytest.mark.parametrize("propagate", [True, False])
def test_auto_job_equals_segment_everything_on_the_stack(tmp_path, tiny_model_path, propagate):
    """`napari-sam auto` (slice by slice, then linked and propagated, or streamed without
    propagation) == ns.segment_everything(stack embeddings)."""
    import napari_sam as ns

    inp = _stack(tmp_path / "a.tif", shape=(4, 48, 48))
    params = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
              "link_iou": 0.2, "max_gap": 1, "min_z_extent": 1, "propagate": propagate}
    ctx = batch.Context(command="auto", model=str(tiny_model_path), out_dir=tmp_path / "out",
                        device="cpu", quiet=True, params=params, preview=True)
    (job,) = batch.make_jobs([inp], ctx)
    res = batch.run_job(job, ctx)
    assert res.status == "done", res.reason
    model, _ = batch.get_model(str(tiny_model_path), "cpu")
    stack = batch.open_image(inp, ctx).stack
    ref = ns.segment_everything(ns.embed(stack, model, device="cpu"), model, points_per_side=4,
                                pred_iou_thresh=0.0, stability_score_thresh=0.0, link_iou=0.2,
                                max_gap=1, min_z_extent=1, device="cpu", propagate=propagate)
    assert ("propagation" in ref.stats) == propagate
    out = nio.read_image(job.output)
    assert ref.n_objects > 0
    np.testing.assert_array_equal(out.data, ref.labels)
    sc = nio.read_sidecar(job.output)
    assert [o["id"] for o in sc["objects"]] == [r.id for r in ref.records]
    assert [o["area"] for o in sc["objects"]] == [r.volume for r in ref.records]
    assert [o["slice_range"] for o in sc["objects"]] == [[r.bbox[0], r.bbox[3] - 1]
                                                         for r in ref.records]
    np.testing.assert_allclose([o["score"] for o in sc["objects"]],
                               [r.predicted_iou for r in ref.records], rtol=1e-5)
    assert batch.preview_path(job.output).is_file()


def test_auto_propagation_that_cannot_fit_fails_before_any_work(tmp_path, tiny_model_path,
                                                                monkeypatch):
    """Propagation holds the label volumes in memory: when the machine does not have it, the
    job fails at once with a message naming --no-propagate, which then runs."""
    inp = _stack(tmp_path / "a.tif", shape=(4, 48, 48))
    params = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    ctx = batch.Context(command="auto", model=str(tiny_model_path), out_dir=tmp_path / "out",
                        device="cpu", quiet=True, params={**params, "propagate": True})
    need = 4 * 48 * 48 * batch.PROPAGATION_BYTES_PER_VOXEL
    monkeypatch.setattr(auto_runner, "available_memory", lambda: need - 1)
    (job,) = batch.make_jobs([inp], ctx)
    res = batch.run_job(job, ctx)
    assert res.status == "failed" and "--no-propagate" in res.reason and "4 x 48 x 48" in res.reason
    monkeypatch.setattr(auto_runner, "available_memory", lambda: 40_000)  # (was "0.0 GB")
    assert batch.run_job(job, ctx).reason.startswith(
        "propagating the objects of this 4 x 48 x 48 stack needs about 0.2 MB of memory for its "
        "label volumes, more than the 40.0 kB available here (or under this job's memory limit)")
    assert not list(auto_runner.auto_work_dir(job).glob("z*.npz")) and not job.output.exists()
    monkeypatch.setattr(auto_runner, "available_memory", lambda: need)
    assert batch.run_job(job, ctx).status == "done"
    flat = replace(ctx, params={**params, "propagate": False}, out_dir=tmp_path / "flat")
    monkeypatch.setattr(auto_runner, "available_memory", lambda: 1)
    (job,) = batch.make_jobs([inp], flat)
    assert batch.run_job(job, flat).status == "done"


def test_auto_work_folder_survives_a_change_of_linking_or_propagation(tmp_path):
    """The saved slices depend only on the per-slice parameters, so a run stopped while
    linking or propagating can be rerun with other linking options (or --no-propagate)."""
    inp = _stack(tmp_path / "a.tif", shape=(4, 48, 48))
    base = {"points_per_side": 4, "link_iou": 0.25, "propagate": True}
    ctx = batch.Context(command="auto", model="demo", out_dir=tmp_path / "out", params=base)
    (job,) = batch.make_jobs([inp], ctx)
    work = batch.prepare_auto_work(job, ctx)
    (work / "z000000.npz").write_bytes(b"slice")
    for change in ({"propagate": False}, {"link_iou": 0.5, "min_z_extent": 3}):
        assert batch.prepare_auto_work(job, replace(ctx, params={**base, **change})) == work
        assert (work / "z000000.npz").exists()
    batch.prepare_auto_work(job, replace(ctx, params={**base, "points_per_side": 8}))
    assert not (work / "z000000.npz").exists()


def test_auto_blocks_store_embeddings_for_propagation(tmp_path, tiny_model_path):
    """The blocks of a cluster run keep their embeddings in the job's store, so the final task
    propagates without encoding the stack again, and writes what a serial run writes."""
    from napari_sam.embeddings import StackEmbeddings

    inp = _stack(tmp_path / "a.tif", shape=(5, 48, 48))
    params = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    ctx = batch.Context(command="auto", model=str(tiny_model_path), out_dir=tmp_path / "blocks",
                        device="cpu", quiet=True, params=params)
    (job,) = batch.make_jobs([inp], ctx)
    batch.prepare_auto_work(job, ctx)
    store = distributed.auto_prepare_task(job, ctx)
    assert store is not None
    results = [distributed.auto_block_task(job, ctx, store, s, e) for s, e in ((0, 3), (3, 5))]
    assert sorted(z for r in results for z in r["hashes"]) == [0, 1, 2, 3, 4]
    distributed.record_hashes(store, [r["hashes"] for r in results])
    model, _ = batch.get_model(str(tiny_model_path), "cpu")
    emb = StackEmbeddings(batch.open_image(inp, ctx).stack, model, store=Path(store))
    emb.compute()
    assert emb.encoder_calls == 0  # every slice's features came from the blocks
    res = distributed.final_task(job, ctx, None, results)
    assert res.status == "done", res.reason
    serial = replace(ctx, out_dir=tmp_path / "serial")
    (sjob,) = batch.make_jobs([inp], serial)
    assert batch.run_job(sjob, serial).status == "done"
    np.testing.assert_array_equal(nio.read_image(job.output).data,
                                  nio.read_image(sjob.output).data)
    # without propagation there is nothing to keep
    flat = replace(ctx, params={**params, "propagate": False})
    assert distributed.auto_prepare_task(job, flat) is None


def test_segment_options_are_keywords_of_segment_volume():
    """One list of ``segment`` parameters (batch.SEGMENT_OPTIONS): each one is a keyword-only
    parameter of segment_volume, named once, and SEGMENT_KEYS is that list."""
    import inspect

    from napari_sam.volume import segment_volume

    params = inspect.signature(segment_volume).parameters
    names = [o.name for o in batch.SEGMENT_OPTIONS]
    assert len(set(names)) == len(names)
    assert tuple(names) == batch.SEGMENT_KEYS
    for name in names:
        assert name in params and params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    flagged = [o for o in batch.SEGMENT_OPTIONS if o.flag is not None]
    assert [o.flag for o in flagged] == ["--" + o.name.replace("_", "-") for o in flagged]
    assert all(o.kind in ("choice", "fraction", "fraction_or_off", "nonneg_int") for o in flagged)


def test_a_blocked_embed_counts_only_what_an_earlier_run_left(tmp_path, tiny_model_path):
    """``embed --workers N --block-slices K``: the final task reads back every slice the
    blocks had just put in the ``.partial`` store, and a first run's line said ``resumed:
    kept 5 of 5 slice embeddings an interrupted run finished``. It counts only the slices the
    blocks skipped (an interrupted run's): none on a first run, 3 of 5 after one that
    finished slices 0-2."""
    inp = _stack(tmp_path / "a.tif", shape=(5, 48, 48))
    ctx = batch.Context(command="embed", model=str(tiny_model_path), device="cpu",
                        out_dir=tmp_path / "out", quiet=True, tiling=None)
    (job,) = batch.make_jobs([inp], ctx)
    partial = job.output.with_name(f".{job.output.name}.partial")

    def blocked_run(spans):
        limits = distributed.embed_prepare_task(job, ctx)
        blocks = [distributed.embed_block_task(job, ctx, limits, s, e) for s, e in spans]
        return distributed.final_task(job, ctx, blocks, None)

    res = blocked_run(((0, 3), (3, 5)))
    assert res.status == "done" and res.details["rerun_reason"] == ""
    assert res.details["resume"]["kept"] == 0
    out = tmp_path / "out"
    import shutil

    shutil.rmtree(out)
    limits = distributed.embed_prepare_task(job, ctx)  # an interrupted run kept slices 0-2
    distributed.record_hashes(partial, [distributed.embed_block_task(job, ctx, limits, 0, 3)[
        "hashes"]])
    res = blocked_run(((0, 3), (3, 5)))
    assert res.status == "done"
    assert res.details["rerun_reason"] == ("resumed: kept 3 of 5 slice embeddings an "
                                           "interrupted run finished, computed the other 2")


def test_a_blocked_files_time_counts_its_blocks(tmp_path, tiny_model_path):
    """``embed --block-slices`` reported "32 slices, 0.0 s": only the final task's time (the
    blocks had done the encoding). A file's seconds now run from its first block's start (not
    the sum of the blocks' times: they run side by side)."""
    import time

    inp = _stack(tmp_path / "a.tif", shape=(5, 48, 48))
    for command in ("embed", "auto"):
        params = ({"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
                  if command == "auto" else {})
        ctx = batch.Context(command=command, model=str(tiny_model_path), device="cpu",
                            out_dir=tmp_path / command, quiet=True, params=params)
        (job,) = batch.make_jobs([inp], ctx)
        t0 = time.time()
        if command == "embed":
            limits = distributed.embed_prepare_task(job, ctx)
            blocks = [distributed.embed_block_task(job, ctx, limits, s, e)
                      for s, e in ((0, 3), (3, 5))]
            res = distributed.final_task(job, ctx, blocks, None)
        else:
            batch.prepare_auto_work(job, ctx)
            store = distributed.auto_prepare_task(job, ctx)
            blocks = [distributed.auto_block_task(job, ctx, store, s, e)
                      for s, e in ((0, 3), (3, 5))]
            res = distributed.final_task(job, ctx, None, blocks)
        assert res.status == "done", res.reason
        assert sorted(z for b in blocks for z in b["hashes"]) == [0, 1, 2, 3, 4]
        assert t0 <= blocks[0]["started"] <= blocks[1]["started"]
        assert time.time() - blocks[0]["started"] >= res.seconds > time.time() - blocks[1][
            "started"]  # from the first block's start, not the final task's own time
