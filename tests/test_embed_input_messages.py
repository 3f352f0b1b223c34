"""What ``napari_sam.embed`` says about a store it cannot write and a multiscale pyramid
passed as the stack: the problem and what to do, not a misleading guess."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import napari_sam as ns


@contextlib.contextmanager
def read_only_folder(tmp_path):
    """A folder on a read-only file system (a read-only tmpfs, mounted when this process
    may mount), else None."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def test_a_store_on_a_read_only_file_system_says_so(tiny_sam, tmp_path):
    """It said "(OSError: [Errno 30] Read-only file system ...); it holds something else (a
    zarr array?)"; now it says the folder is read-only and what to do."""
    with read_only_folder(tmp_path) as folder:
        if folder is None:
            pytest.skip("no read-only file system can be mounted here")
        with pytest.raises(ValueError) as info:
            ns.embed(np.zeros((2, 64, 64), np.uint8), tiny_sam, store=folder / "emb.zarr")
    msg = str(info.value)
    assert f"cannot write the embedding store {folder / 'emb.zarr'}: {folder} is read-only" \
        in msg
    assert "Give a store path in a folder you can write to" in msg
    assert "leave store out to keep the embeddings in memory" in msg
    assert "something else" not in msg


def test_a_store_in_a_folder_without_write_permission_says_so(tiny_sam, tmp_path):
    """The same for a folder the user may not write to (root writes anywhere but in
    read-only file systems and /sys)."""
    if os.geteuid() == 0:
        parent = Path("/sys")
    else:
        parent = tmp_path / "locked"
        parent.mkdir()
        parent.chmod(0o555)
    store = parent / "napari-sam-test-emb.zarr"
    with pytest.raises(ValueError) as info:
        ns.embed(np.zeros((2, 64, 64), np.uint8), tiny_sam, store=store)
    msg = str(info.value)
    assert f"cannot write the embedding store {store}: {parent} cannot be written to" in msg
    assert "something else" not in msg and not store.exists()


def test_a_multiscale_pyramid_is_told_to_pass_its_full_resolution_level(tiny_sam, tmp_path):
    """``embed([g["0"], g["1"], g["2"]])`` (napari's multiscale data of an OME-Zarr) said
    "the stack's slices have different shapes (setting an array element with a sequence
    ...)"; now it names the pyramid and says to pass ``levels[0]``."""
    import zarr

    group = zarr.open_group(str(tmp_path / "img.zarr"), mode="w")
    full = np.zeros((3, 64, 64), np.uint16)
    for i in range(3):
        group.create_array(str(i), data=full[:, :: 2 ** i, :: 2 ** i])
    with pytest.raises(TypeError) as info:
        ns.embed([group["0"], group["1"], group["2"]], tiny_sam)
    assert str(info.value) == (
        "expected one stack array, got the 3 levels of a multiscale pyramid (shapes "
        "(3, 64, 64), (3, 32, 32), (3, 16, 16): each level 2 x 2 smaller in (Y, X)); pass the "
        "full-resolution level, levels[0] (shape (3, 64, 64))")
    slices = [np.zeros((64, 64), np.uint8)] * 2  # a list of slices is still a stack
    assert ns.embed(slices, tiny_sam).shape[0] == 2
