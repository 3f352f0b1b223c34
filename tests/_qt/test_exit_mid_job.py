"""napari closed, and its process ending, while a dock's job still reads in its worker thread
(a lazy image's pixels hashed for the look-up of its autosave or for the autosave of a
commit, a checkpoint file picked in 'Model'): the read ended while the interpreter exited, after Qt had deleted the worker's
signals, and the process aborted ("RuntimeError: wrapped C/C++ object of type
GeneratorWorkerSignals has been deleted", then "Aborted"). Its thread now ends quietly. In
a child process: the abort would end pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

_CHILD = textwrap.dedent('''
    import atexit, sys, threading
    sys.path[:0] = [{helpers!r}, {tests!r}]
    import dask
    import dask.array as da
    import napari
    from sam_qt_helpers import blob_stack, open_from_menu
    from test_lazy_resume_lookup import _HeldHash
    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    ui, entered, read = threading.get_ident(), threading.Event(), threading.Event()
    seen = []  # whether the read had ended when Qt deleted the worker's signals
    atexit.register(lambda: print("READ ENDED" if read.is_set() else "READ RUNNING",
                                  *seen, flush=True))  # (registered first: runs last)

    class Held(_HeldHash):
        """A remote zarr's slices, hashed off the UI thread once the test lets them."""

        def __getitem__(self, key):
            if threading.get_ident() != ui:
                entered.set()
            value = super().__getitem__(key)
            if threading.get_ident() != ui:
                read.set()
            return value

    dask.config.set(scheduler="synchronous")
    viewer = napari.Viewer(show=True)
    if {mode!r} == "lookup":  # an image without a file was autosaved: picking one hashes it
        memory_sessions_folder().mkdir(parents=True, exist_ok=True)
        reads = Held(blob_stack(), ui)
        viewer.add_image(da.from_array(reads, chunks=(1, 64, 64)), name="cells")
        gate = reads.gate
        _dock, widget = open_from_menu(viewer)
        job = widget.controller._pixel_lookup
    elif {mode!r} == "autosave":  # a first commit on it: autosaved once a worker hashed it
        from napari_sam.models import SamConfig, build_sam
        from napari_sam.predictor import Predictor
        from sam_qt_helpers import canvas_click, use_predictor
        from tiny_configs import TINY_VIT

        reads = Held(blob_stack(), ui)
        viewer.add_image(da.from_array(reads, chunks=(1, 64, 64)), name="cells")
        gate = reads.gate
        _dock, widget = open_from_menu(viewer)
        widget.preload = False
        c = widget.controller
        use_predictor(widget, Predictor(build_sam(SamConfig(**TINY_VIT)), device="cpu"))
        c.sync = True  # (the click's preview decoded at once)
        viewer.dims.set_point(0, 1)
        viewer.layers.selection.active = c.points_layer
        canvas_click(viewer, 20, 20)
        c.sync = False  # the dock's threaded jobs
        assert widget._on_commit() is not None, c.status
        job = c._hash_job
    else:  # a checkpoint file picked in 'Model', read (torch.load) in a worker thread
        import torch

        gate = threading.Event()

        def load(*args, **kwargs):
            entered.set()
            assert gate.wait(60)
            read.set()
            raise OSError("the network drive did not answer")

        torch.load = load
        viewer.add_image(blob_stack(), name="blobs")
        _dock, widget = open_from_menu(viewer)
        widget.preload = False
        widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
        widget._on_model_changed({ckpt!r})
        job = widget.controller.job
    assert job is not None and job.worker is not None, "a threaded job"
    assert entered.wait(60), "the job reads"
    viewer.close()  # File > Close Window; then napari's process ends

    def deleted(*_):  # Qt deletes the worker's signals as the interpreter exits
        seen.append("after" if read.is_set() else "before")
        gate.set()  # the read ends now (the process aborted here)

    job.worker.signals.destroyed.connect(deleted)
    print("EXITING", flush=True)
''')


@pytest.mark.skipif(not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
                    reason="needs a display to show the viewer (run under xvfb-run)")
@pytest.mark.parametrize("mode", ["lookup", "autosave", "checkpoint"])
def test_napari_exiting_while_a_job_reads_ends_cleanly(tmp_path, mode):
    ckpt = tmp_path / "big.pt"
    ckpt.write_bytes(b"\0" * 4096)
    script = _CHILD.format(helpers=str(HERE), tests=str(HERE.parent), mode=mode,
                           ckpt=str(ckpt))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert "has been deleted" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, f"napari died ({proc.returncode}): {proc.stderr[-3000:]}"
    # the read ended as the process exited, after Qt deleted the worker's signals
    assert proc.stdout.splitlines()[-2:] == ["EXITING", "READ ENDED before"], proc.stdout
