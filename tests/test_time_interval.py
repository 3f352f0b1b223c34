"""A movie's time between frames (ImageJ ``finterval``, OME ``TimeIncrement``) is read with
the image and written with its labels: the labels of a 2-minute time-lapse opened in Fiji or
TrackMate said 1 frame per second (nothing was written), so tracks' speeds came out wrong."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from napari_sam import io as nio
from stacks import blob_stack

MINUTES = {"value": 2.5, "unit": "min"}


def _labels(shape):
    rng = np.random.default_rng(0)
    return rng.integers(0, 4, shape).astype(np.uint16)


@pytest.mark.parametrize(("name", "max_id"), [("l.tif", 3), ("l.ome.tif", 3), ("big.tif", 70000),
                                              ("l.zarr", 3)])
@pytest.mark.parametrize("axes", ["TYX", "TZYX"])
def test_labels_keep_the_frame_interval_they_are_given(tmp_path, name, max_id, axes):
    labels = _labels((3, 2, 16, 16)[-len(axes):]).astype(np.uint32)
    labels.flat[0] = max_id  # 70000: uint32, an OME-TIFF
    path = nio.write_labels(tmp_path / name, labels, axes=axes, time_interval=MINUTES)
    got = nio.read_image(path)
    assert got.metadata["time_interval"] == MINUTES
    np.testing.assert_array_equal(np.asarray(got.data), labels)
    if name.endswith(".tif"):
        with tifffile.TiffFile(path) as tif:  # where other tools look for it
            if tif.is_ome:
                assert 'TimeIncrement="2.5" TimeIncrementUnit="min"' in tif.ome_metadata
            else:
                assert tif.imagej_metadata["finterval"] == 2.5
                assert tif.imagej_metadata["tunit"] == "min"


def test_streamed_labels_keep_the_frame_interval(tmp_path):
    labels = _labels((3, 2, 16, 16))
    path = nio.write_labels_stream(tmp_path / "s.tif", (p for v in labels for p in v),
                                   shape=labels.shape, max_id=3, axes="TZYX",
                                   time_interval={"value": 30, "unit": "sec"})
    assert nio.read_image(path).metadata["time_interval"] == {"value": 30.0, "unit": "s"}
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["finterval"] == 30 and "tunit" not in tif.imagej_metadata


def test_no_interval_where_the_file_has_none_or_no_time_axis(tmp_path):
    labels = _labels((3, 16, 16))
    plain = nio.write_labels(tmp_path / "plain.tif", labels, axes="TYX")
    assert "time_interval" not in nio.read_image(plain).metadata
    zero = tmp_path / "zero.tif"  # ImageJ's "not calibrated"
    tifffile.imwrite(zero, labels, imagej=True, metadata={"axes": "TYX", "finterval": 0})
    assert "time_interval" not in nio.read_image(zero).metadata
    volume = nio.write_labels(tmp_path / "zyx.tif", labels, axes="ZYX", time_interval=MINUTES)
    assert "time_interval" not in nio.read_image(volume).metadata  # no T: nothing to time


@pytest.mark.parametrize("bad", [{"value": 0}, {"value": -1.0, "unit": "s"},
                                 {"value": float("nan")}, {"unit": "s"}])
def test_an_impossible_interval_is_refused_before_anything_is_written(tmp_path, bad):
    with pytest.raises(ValueError, match="time_interval .* must give a positive 'value'"):
        nio.write_labels(tmp_path / "l.tif", _labels((3, 16, 16)), axes="TYX",
                         time_interval=bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("offline_cli")
@pytest.mark.parametrize("axes", ["TZYX", "TYX"])
def test_auto_writes_the_input_movies_frame_interval_on_its_labels(tmp_path, capsys, tiny_model,
                                                                  axes):
    """A movie of volumes (each time point its own volume) and a 2D time-lapse."""
    movie = np.stack([blob_stack(z=3, seed=0), blob_stack(z=3, seed=1)])
    if axes == "TYX":
        movie = movie[:, 1]
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, movie, imagej=True,
                     metadata={"axes": axes, "finterval": 2.5, "tunit": "min"})
    out = tmp_path / "out"
    rc, _, err = cli(["auto", path, "-o", out, "--model", tiny_model, "--device", "cpu",
                      "--points-per-side", "4"], capsys)
    assert rc == 0, err
    got = nio.read_image(out / "movie_labels.tif")
    assert got.axes == axes and got.metadata["time_interval"] == MINUTES


def test_napari_opens_and_saves_movie_labels_with_their_frame_interval(tmp_path):
    """Our napari reader and writer (File > Open, File > Save Layers): the interval rides in
    the layer's metadata, and the time axis keeps scale 1 to overlay napari's movie."""
    from napari.layers import Labels

    from napari_sam._reader import read_labels_tiff
    from napari_sam._writer import write_labels_tiff

    labels = _labels((3, 2, 16, 16))
    path = nio.write_labels(tmp_path / "movie_labels.tif", labels, axes="TZYX",
                            pixel_size=(2.0, 0.5, 0.5), time_interval=MINUTES)
    ((data, meta, _),) = read_labels_tiff(str(path))
    assert meta["metadata"]["time_interval"] == MINUTES and meta["scale"][0] == 1.0
    _, saved_meta, _ = Labels(data, **meta).as_layer_data_tuple()  # what napari hands on
    again = tmp_path / "again.tif"
    assert write_labels_tiff(str(again), data, saved_meta) == [str(again)]
    got = nio.read_image(again)
    assert got.metadata["time_interval"] == MINUTES and got.axes == "TZYX"


@pytest.mark.parametrize(("shape", "stack_axis", "units", "want"), [
    ((3, 2, 16, 16), None, ("minute", "um", "um", "um"), MINUTES),
    ((3, 16, 16), "t", ("millisecond", "um", "um"), {"value": 2.5, "unit": "ms"}),
    ((3, 16, 16), "t", ("microsecond", "um", "um"), {"value": 2.5, "unit": "us"})])
def test_a_layers_time_scale_is_saved_as_the_interval(tmp_path, shape, stack_axis, units,
                                                      want):
    """A labels layer whose time axis napari scales in a unit of time (the dock copies the
    movie's scale and units onto its labels: a movie added with ``scale=(150, ...)``,
    ``units=("second", ...)``, or opened by an OME-Zarr reader) is saved with that time between
    frames (it was dropped: Fiji and TrackMate took 1 frame per second)."""
    from napari.layers import Labels

    from napari_sam._writer import write_labels_tiff

    meta = {"stack_axis": stack_axis} if stack_axis else {}
    layer = Labels(_labels(shape), scale=(2.5, *[0.5] * (len(shape) - 1)), units=units,
                   metadata=meta)
    data, saved_meta, _ = layer.as_layer_data_tuple()
    path = write_labels_tiff(str(tmp_path / "movie_labels.tif"), data, saved_meta)[0]
    got = nio.read_image(path)
    assert got.axes == ("TZYX" if len(shape) == 4 else "TYX")
    assert got.metadata["time_interval"] == want


def _ome_zarr_movie(path, time_axis: dict, t_scale: float) -> None:
    """A (2, 3, 8, 8) OME-Zarr movie (0.5 x 0.5 x 2 um voxels) at ``path`` whose time axis is
    ``time_axis`` with the scale ``t_scale``."""
    import zarr

    data = _labels((2, 3, 8, 8))
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=data.shape, dtype=data.dtype)[...] = data
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "t", "type": "time", **time_axis},
                 {"name": "z", "type": "space", "unit": "micrometer"},
                 {"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [t_scale, 2.0, 0.5, 0.5]}]}],
    }]


@pytest.mark.parametrize("opened", ["movie.zarr", "movie.zarr/0"])
def test_an_ome_zarr_movie_gives_its_time_axis_scale_as_the_interval(tmp_path, opened):
    """Also where its full-resolution array is opened (``movie.zarr/0``: the parent's axes
    and voxel size were read, its time scale was not: the labels had no interval)."""
    _ome_zarr_movie(tmp_path / "movie.zarr", {"unit": "minute"}, 2.5)
    got = nio.read_image(tmp_path / opened)
    assert got.axes == "TZYX" and got.pixel_size == pytest.approx((2.0, 0.5, 0.5))
    assert got.metadata["time_interval"] == MINUTES


@pytest.mark.parametrize(("t_scale", "want"), [(1.0, None), (30.0, {"value": 30.0, "unit": "s"})])
def test_an_ome_zarr_time_axis_without_unit(tmp_path, t_scale, want):
    """A time axis with neither unit nor scale (1, what OME-Zarr writers put there by
    default) names no interval: its labels said 1 s, which the movie never claimed; another
    scale is taken in seconds, as ImageJ and OME take an interval without a unit."""
    _ome_zarr_movie(tmp_path / "movie.zarr", {}, t_scale)
    assert nio.read_image(tmp_path / "movie.zarr").metadata.get("time_interval") == want


#: OME's UnitsTime (ome.xsd): the only values TimeIncrementUnit may take.
OME_UNITS_TIME = {"Ys", "Zs", "Es", "Ps", "Ts", "Gs", "Ms", "ks", "hs", "das", "s", "ds", "cs",
                  "ms", "µs", "ns", "ps", "fs", "as", "zs", "ys", "min", "h", "d"}


@pytest.mark.parametrize(("unit", "symbol"), [
    ("us", "µs"), ("microsecond", "µs"), ("hr", "h"), ("hour", "h"), ("sec", "s"),
    ("msec", "ms"), ("min", "min"), ("weeks", None), ("µs", "µs")])
def test_ome_labels_write_the_time_unit_as_an_ome_symbol(tmp_path, unit, symbol):
    """OME-TIFF labels of a movie in ``us``, ``hour``, ``hr``, ``msec``: TimeIncrementUnit is
    OME's symbol (``µs``, ``h``, ``ms``; was written as given, which OME's schema refuses:
    Bio-Formats and OMERO failed on the file's OME-XML). A unit OME has none for writes no
    interval there (without a unit OME reads seconds); the ImageJ TIFF keeps ``tunit`` as
    given (``µs``, as an OME-TIFF movie gives it, as ``us``: the description is ASCII, and
    writing the labels failed with UnicodeEncodeError)."""
    import re

    labels = _labels((3, 16, 16))
    time = {"value": 2.0, "unit": unit}
    path = nio.write_labels(tmp_path / "l.ome.tif", labels, axes="TYX", time_interval=time)
    with tifffile.TiffFile(path) as tif:
        written = dict(re.findall(r'(TimeIncrement\w*)="([^"]*)"', tif.ome_metadata))
    if symbol is None:
        assert written == {}
        assert "time_interval" not in nio.read_image(path).metadata
    else:
        assert written == {"TimeIncrement": "2.0", "TimeIncrementUnit": symbol}
        assert symbol in OME_UNITS_TIME
        assert nio.read_image(path).metadata["time_interval"] == {"value": 2.0, "unit": symbol}
    ij = nio.write_labels(tmp_path / "l.tif", labels, axes="TYX", time_interval=time)
    with tifffile.TiffFile(ij) as tif:
        assert tif.imagej_metadata.get("tunit", "s") == {"sec": "s", "µs": "us"}.get(unit, unit)
