"""What a file's metadata names (`napari_sam.io.file_header`) follows the one rule for axes
no metadata named (`napari_sam.io.axes_inferred`)."""

from __future__ import annotations

import numpy as np
import tifffile

from napari_sam import io


def test_a_tiff_whose_axes_tifffile_calls_unknown_names_no_axes(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((5, 64, 64), np.uint16))  # shaped: axes "QYX"
    img = io.read_image(path, lazy=True)
    assert img.metadata["source_axes"] == "QYX" and io.axes_inferred(img.metadata)

    assert io.file_header(path) is None
    assert io.file_axes(path) is None
    assert io.file_stack_axis(path) is None


def test_a_tiff_that_names_its_axes_keeps_its_header(tmp_path):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, np.zeros((5, 64, 64), np.uint16), imagej=True,
                     metadata={"axes": "TYX"}, resolution=(2.0, 2.0))
    header = io.file_header(path)
    assert header is not None and header.axes == "TYX"
    assert io.file_stack_axis(path) == ("t", "TYX")
    assert header.pixel_size is not None and header.pixel_size[-1] == 0.5
