"""File > Open of a label TIFF we wrote gives back a Labels layer with its values, dtype, scale
and units (napari_sam._reader through napari's own open path); a plain TIFF opens with
napari's reader as before, without a reader dialog."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
tifffile = pytest.importorskip("tifffile")

OURS = "napari-sam-stacks"


def _labels(big: bool = False) -> np.ndarray:
    lab = np.zeros((4, 30, 40), np.uint32 if big else np.uint16)
    lab[1, 5:10, 5:12] = 3
    lab[2, 20:25, 30:38] = 70_000 if big else 700  # above uint16: an OME-TIFF
    return lab


def _saved(viewer, path, data, **kwargs):
    """Save a labels layer made with ``kwargs`` with our writer, as File > Save does."""
    layer = viewer.add_labels(data, **kwargs)
    assert layer.save(str(path), plugin=OURS) == [str(path)]
    viewer.layers.remove(layer)
    return layer


def _same_layer(opened, saved):
    from napari.layers import Labels

    assert isinstance(opened, Labels)
    assert opened.data.dtype == saved.data.dtype
    assert np.array_equal(opened.data, saved.data)
    assert opened.scale == pytest.approx(saved.scale)
    assert opened.translate == pytest.approx(saved.translate)
    assert [str(u) for u in opened.units] == [str(u) for u in saved.units]


@pytest.mark.parametrize("big", [False, True])  # ImageJ uint16 / OME-TIFF uint32
def test_saved_labels_open_back_as_labels_with_their_scale(make_napari_viewer, tmp_path, big):
    viewer = make_napari_viewer()
    path = tmp_path / "cells_labels.tif"
    saved = _saved(viewer, path, _labels(big), scale=(2.0, 0.5, 0.5), units=("nm",) * 3,
                   translate=(0.0, 10.0, 4.0), name="segmentation")
    (opened,) = viewer.open(path, plugin=OURS)
    _same_layer(opened, saved)
    assert opened.name == "cells_labels"


def test_a_time_series_opens_as_one_and_saves_again_as_tyx(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    path = tmp_path / "movie_labels.tif"
    saved = _saved(viewer, path, _labels(), scale=(1.0, 0.5, 0.5), units=("um",) * 3,
                   metadata={"stack_axis": "t"})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TYX"
    (opened,) = viewer.open(path, plugin=OURS)
    assert [str(u) for u in opened.units] == ["pixel", "micrometer", "micrometer"]
    assert opened.scale == pytest.approx(saved.scale)
    again = tmp_path / "again_labels.tif"
    assert opened.save(str(again), plugin=OURS) == [str(again)]
    with tifffile.TiffFile(again) as tif:
        assert tif.series[0].axes == "TYX"


def _dialog_spy(monkeypatch, choice):
    """napari's reader dialog, answered with ``choice`` (a reader's display name); returns the
    list of the readers each dialog offered."""
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog

    offered = []

    def answer(self):
        offered.append([b.text() for b in self.reader_btn_group.buttons()])
        return choice, False

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", answer)
    return offered


def test_file_open_asks_for_a_labels_tiff_only(make_napari_viewer, tmp_path, monkeypatch):
    """File > Open (napari's _qt_open, no plugin named): a plain TIFF opens with napari's
    reader and no dialog; a *_labels.tif offers our reader, which gives a Labels layer."""
    from napari.layers import Image

    viewer = make_napari_viewer()
    offered = _dialog_spy(monkeypatch, "Segment Anything Stacks")
    plain = tmp_path / "cells.tif"
    tifffile.imwrite(plain, _labels(), photometric="minisblack")
    viewer.window._qt_viewer._qt_open([str(plain)], stack=False)
    assert offered == [] and isinstance(viewer.layers[-1], Image)
    assert np.array_equal(viewer.layers[-1].data, _labels()) and viewer.layers[-1].name == "cells"
    path = tmp_path / "cells_labels.tif"
    saved = _saved(viewer, path, _labels(), scale=(2.0, 0.5, 0.5), units=("um",) * 3)
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)
    assert len(offered) == 1 and "Segment Anything Stacks" in offered[0]
    _same_layer(viewer.layers[-1], saved)


def test_a_reader_preference_opens_labels_without_asking(make_napari_viewer, tmp_path,
                                                          monkeypatch, recwarn):
    """With Preferences > Plugins: *_labels.tif -> Segment Anything Stacks, viewer.open with
    no plugin opens a label TIFF as Labels and a plain TIFF as before, with no warning."""
    from napari.layers import Image
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    settings = get_settings()
    monkeypatch.setattr(settings, "config_path", None)  # not saved into the user's settings
    monkeypatch.setattr(settings.plugins, "extension2reader", {"*_labels.tif": OURS})
    path = tmp_path / "cells_labels.tif"
    saved = _saved(viewer, path, _labels(), scale=(3.0, 0.25, 0.25), units=("um",) * 3)
    plain = tmp_path / "cells.tif"
    tifffile.imwrite(plain, _labels(), photometric="minisblack")
    (opened,) = viewer.open(path, plugin=None)
    _same_layer(opened, saved)
    (image,) = viewer.open(plain, plugin=None)
    assert isinstance(image, Image)
    assert not [w for w in recwarn if "plugin" in str(w.message)]
