"""A napari image layer's data seen as a stack of 2D slices, and the geometry of our layers.

The plugin segments 2D slices. An image (a napari image layer's data, or any array) is one of:

- 2D grey ``(Y, X)`` or RGB(A) ``(Y, X, 3|4)`` -> a stack of one slice;
- 3D grey ``(Z, Y, X)`` (or ``(T, Y, X)``) or RGB ``(Z, Y, X, 3|4)`` -> Z slices;
- either of these with one extra *channel axis* chosen by the user (any axis but the last
  two spatial ones), e.g. ``(Z, C, Y, X)`` or ``(C, Y, X)``: one *channel* of it is
  segmented as a grey image, or (no channel chosen) channels 0-2 become R, G, B.
- any of these with more axes of size 1 before (Y, X) (T = 1, C = 1 as readers give them):
  those axes are left out, (1, 1, Z, Y, X) is the stack (Z, Y, X) (:func:`singleton_axes`).
- a multiscale (pyramid) image, e.g. an OME-Zarr: a list of levels, level 0 the full
  resolution; level 0 is segmented (read slice by slice), in its pixel grid.
- with a ``time_point`` (the dock's time slider), a movie of volumes ``(T, Z, Y, X)`` (or
  ``(T, Z, C, Y, X)`` with a channel axis): its first axis is time, and the volume at that
  time point is the stack (read lazily); the layers we make keep all T time points.

The prompt, preview and result layers the GUI creates have the image layer's dimensions, with the
channel axis (if any) kept at size 1 and stretched over all channels (scale C times the
image's), so napari aligns them with the image and shows them at every channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ImageSource", "SliceView", "UnsupportedImage", "make_source", "segmented_words"]


class UnsupportedImage(ValueError):
    """The layer's data cannot be segmented as given; the message says what to do."""


class SliceView:
    """Read-only view ``[z] -> (Y, X)`` or ``(Y, X, 3)`` of a layer's data (lazy per slice):
    with a ``channel`` of the ``channel_axis``, ``(Y, X)`` slices of that channel alone.

    Has what :class:`napari_sam.embeddings.StackEmbeddings` needs: ``shape``, ``dtype``,
    ``len()`` and integer indexing; ``view[z, rows, cols]`` (what the windows of
    :class:`napari_sam.tiled_stack.TiledStackEmbeddings` read) crops slice ``z``, and the
    last slice read is kept, so the windows of one slice read it once.
    """

    def __init__(self, data, *, rgb: bool, channel_axis: int | None, two_d: bool,
                 channel: int | None = None):
        self._data = data
        self._rgb = rgb
        self._channel_axis = channel_axis
        self._channel = channel
        self._two_d = two_d
        shape = tuple(int(s) for s in data.shape)
        n_channels = 1
        if channel_axis is not None:
            n_channels = shape[channel_axis]
            shape = shape[:channel_axis] + shape[channel_axis + 1 :]
        if two_d:
            shape = (1, *shape)
        if rgb:
            self.shape = shape[:3] + (3,)
        elif n_channels > 1 and channel is None:
            self.shape = (*shape, 3)
        else:
            self.shape = shape
        self.n_channels = n_channels
        self.dtype = np.dtype(data.dtype)
        self._last: tuple[int, np.ndarray] | None = None  # (z, slice) read last, for crops

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, z) -> np.ndarray:
        if isinstance(z, tuple) and z and isinstance(z[0], (int, np.integer)):
            last = self._last
            if last is None or last[0] != int(z[0]):
                last = self._last = (int(z[0]), self[int(z[0])])
            return last[1][z[1:]]
        if not isinstance(z, (int, np.integer)):
            raise TypeError("SliceView supports integer indexing (and [z, rows, cols]) only")
        z = int(z)
        if not 0 <= z < self.shape[0]:
            raise IndexError(f"slice {z} out of range for {self.shape[0]} slices")
        data = self._data
        if self._channel is not None:  # that channel's slice alone (lazy data stays lazy)
            key = [slice(None)] * len(data.shape)
            key[self._channel_axis] = self._channel
            if not self._two_d:
                key[int(self._channel_axis == 0)] = z  # the stack axis: the first other one
            return np.asarray(data[tuple(key)])
        if self._channel_axis is not None:
            data = np.moveaxis(data, self._channel_axis, -1) if isinstance(data, np.ndarray) else (
                _moveaxis_lazy(data, self._channel_axis)
            )
        arr = np.asarray(data if self._two_d else data[z])
        if self._rgb:
            return arr[..., :3]
        if self._channel_axis is None:
            return arr
        c = arr.shape[-1]
        if c == 1:
            return arr[..., 0]
        if c == 2:
            return np.concatenate([arr, np.zeros_like(arr[..., :1])], axis=-1)
        return arr[..., :3]


def _moveaxis_lazy(data, axis: int):
    """``moveaxis`` for array-likes that are not numpy (dask, zarr via dask)."""
    try:
        import dask.array as da

        return da.moveaxis(da.asarray(data), axis, -1)
    except ImportError:  # pragma: no cover - dask ships with napari
        return np.moveaxis(np.asarray(data), axis, -1)


def segmented_words(channel_axis: int | None, channel: int | None,
                    n_channels: int = 3) -> str:
    """What SAM is given of an image with ``channel_axis`` (None: none) of ``n_channels``
    channels when ``channel`` of it is segmented (None: the first three as RGB), in the
    status line's words, numbered from 0 as the 'Channel' entries are: "channel 1 alone",
    "channels 0-1 as red, green (blue empty)", "channels 0-2 as red, green, blue", or "the
    image"."""
    if channel is not None:
        return f"channel {channel} alone"
    if channel_axis is None:
        return "the image"
    if n_channels == 1:  # read as grey
        return "channel 0 alone"
    if n_channels == 2:
        return "channels 0-1 as red, green (blue empty)"
    rest = f" (channels 3-{n_channels - 1} left out)" if n_channels > 4 else (
        " (channel 3 left out)" if n_channels == 4 else "")
    return f"channels 0-2 as red, green, blue{rest}"


@dataclass
class ImageSource:
    """How one image layer maps to SAM's stack of 2D slices.

    Attributes
    ----------
    stack : SliceView
        ``(Z, Y, X)`` or ``(Z, Y, X, 3)``; Z = 1 for 2D images.
    ndim : int
        Number of layer dimensions (RGB channels excluded, channel axis included).
    channel_axis : int or None
        Layer axis holding channels.
    z_axis : int or None
        Layer axis of the stack (None for 2D images).
    rgb : bool
    channel : int or None
        The channel of ``channel_axis`` segmented as a grey image (None: channels 0-2 as
        R, G, B).
    dropped : tuple of int
        Layer axes of size 1 left out of the stack (a T = 1 or C = 1 axis a reader gives:
        (1, Z, Y, X) is read as (Z, Y, X)); our layers keep them at size 1.
    time_axis : int or None
        Layer axis of time in a movie of volumes (None: not a movie); our layers keep it
        at full length.
    time_point : int or None
        The time point of ``time_axis`` whose volume is the stack (None: not a movie).
    n_times : int
        Time points of the movie (1: not a movie).
    data : array-like
        The array the stack reads (a multiscale layer's level 0): the sources of one image
        at its time points share it (a movie's content hash is kept for it, ``hashed_stack``).
    """

    stack: SliceView
    ndim: int
    channel_axis: int | None
    z_axis: int | None
    rgb: bool
    channel: int | None = None
    dropped: tuple[int, ...] = ()
    time_axis: int | None = None
    time_point: int | None = None
    n_times: int = 1
    remake: Callable[[int], SliceView] | None = field(default=None, repr=False, compare=False)
    data: object = field(default=None, repr=False, compare=False)

    def stack_at(self, t: int) -> SliceView:
        """The stack (a :class:`SliceView`, read lazily) at time point ``t`` of a movie (its
        own stack when the image is not a movie, or ``t`` is the time point)."""
        if self.remake is None or t == self.time_point:
            return self.stack
        if not 0 <= int(t) < self.n_times:
            raise IndexError(f"time point {t} out of range for {self.n_times} time points")
        return self.remake(int(t))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, Y, X) of the stack."""
        return tuple(self.stack.shape[:3])

    @property
    def segmented(self) -> str:
        """What SAM is given, in the status line's words: "channel 1 alone", "channels 0-2
        as red, green, blue" (a channel axis without a channel), or "the image"
        (:func:`segmented_words`)."""
        return segmented_words(self.channel_axis, self.channel, self.stack.n_channels)

    @property
    def is_3d(self) -> bool:
        return self.z_axis is not None

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        """Layer axes of (Z,) Y, X in order."""
        return tuple(a for a in range(self.ndim) if a not in self._fixed)

    @property
    def _fixed(self) -> dict[int, int]:
        """Layer axes left out of the stack and the index the stack is at on each: the
        channel axis and ``dropped`` axes at 0 (size 1 in our layers), time at the time
        point."""
        fixed = {a: 0 for a in self.dropped}
        if self.channel_axis is not None:
            fixed[self.channel_axis] = 0
        if self.time_axis is not None:
            fixed[self.time_axis] = int(self.time_point)
        return fixed

    @property
    def flat_offset(self) -> int:
        """Where the stack's (Z, Y, X) view of an array of :attr:`layer_shape` starts in
        its flat (C order) indices: ``time_point * Z * Y * X`` in a movie, else 0."""
        if self.time_axis is None:
            return 0
        return int(self.time_point) * int(np.prod(self.layer_shape[self.time_axis + 1:]))

    @property
    def layer_shape(self) -> tuple[int, ...]:
        """Shape of the labels layers we make: the image's, channel axis of size 1."""
        z, y, x = self.shape
        sizes = iter((z, y, x) if self.is_3d else (y, x))
        return tuple(self.n_times if a == self.time_axis else 1 if a in self._fixed
                     else next(sizes) for a in range(self.ndim))

    def to_zyx(self, coords) -> np.ndarray:
        """Layer data coordinates (N, ndim) -> stack coordinates (N, 3) as (z, row, col)
        (a movie's time coordinate left out: :meth:`at_time_point` says which are at the
        time point)."""
        c = np.asarray(coords, dtype=np.float64).reshape(-1, self.ndim)
        spatial = c[:, list(self.spatial_axes)]
        if not self.is_3d:
            spatial = np.concatenate([np.zeros((len(c), 1)), spatial], axis=1)
        return spatial

    def at_time_point(self, coords) -> np.ndarray:
        """(N,) bool: which layer data coordinates (N, ndim) lie at the time point (all,
        when the image is not a movie)."""
        c = np.asarray(coords, dtype=np.float64).reshape(-1, self.ndim)
        if self.time_axis is None:
            return np.ones(len(c), bool)
        return np.round(c[:, self.time_axis]) == self.time_point

    def slice_of(self, coords) -> int:
        """The stack slice that layer data coordinates (ndim,) fall in (clipped)."""
        if not self.is_3d:
            return 0
        z = float(np.asarray(coords, dtype=np.float64).reshape(-1)[self.z_axis])
        return int(np.clip(np.round(z), 0, self.n_slices - 1))

    def to_layer(self, labels_zyx: np.ndarray) -> np.ndarray:
        """(Z, Y, X) or (Y, X) labels -> an array of :attr:`layer_shape` (a view when possible;
        a movie's: zeros but at the time point); a movie's labels of every time point,
        (T, Z, Y, X) (a session's), -> that array (a view)."""
        arr = labels_zyx
        if self.time_axis is not None and np.ndim(arr) == 4:  # (T, Z, Y, X): all time points
            ones = sorted(a for a in self._fixed if a != self.time_axis)
            return np.expand_dims(arr, tuple(ones)) if ones else arr
        if self.time_axis is not None:
            out = np.zeros(self.layer_shape, np.asarray(arr).dtype)
            self.zyx_view(out)[...] = arr
            return out
        if not self.is_3d and arr.ndim == 3:
            arr = arr[0]
        ones = sorted({*self.dropped, *(() if self.channel_axis is None else (self.channel_axis,))})
        return np.expand_dims(arr, tuple(ones)) if ones else arr

    def zyx_view(self, layer_array: np.ndarray) -> np.ndarray:
        """A writable (Z, Y, X) view of an array of :attr:`layer_shape` (a movie's: of the
        time point)."""
        arr = layer_array
        if tuple(arr.shape) != self.layer_shape:
            raise UnsupportedImage(
                f"the labels layer has shape {tuple(arr.shape)} but the image needs "
                f"{self.layer_shape}; pick a labels layer made for this image or a new one"
            )
        fixed = self._fixed
        if fixed:
            arr = arr[tuple(fixed.get(a, slice(None)) for a in range(self.ndim))]
        if not self.is_3d:
            arr = arr[None]
        return arr

    def in_layer(self, commit):
        """A commit written into the (Z, Y, X) view of a movie's labels (:meth:`zyx_view`),
        made one of the whole array of :attr:`layer_shape`: its flat indices moved by
        :attr:`flat_offset` and its ``shape`` that array's, so that undo and redo (which get
        the whole array) write the pixels of its time point, whichever time point is shown
        then. Any other image's commit is returned as it is.

        Parameters
        ----------
        commit : napari_sam.annotation.Commit
            Just written (``changes`` and ``written`` hold the same changes); changed in
            place.
        """
        if self.time_axis is None:
            return commit
        for change in {id(c): c for c in (*commit.changes, *commit.written)}.values():
            change.index = change.index + self.flat_offset
        commit.shape = tuple(self.layer_shape)
        commit.time_point = self.time_point
        return commit

    def derived_geometry(self, scale, translate) -> tuple[np.ndarray, np.ndarray]:
        """Scale and translate of our layers given the image layer's (channel axis stretched)."""
        scale = np.array(scale, dtype=float)
        translate = np.array(translate, dtype=float)
        if self.channel_axis is not None:
            c = self.stack.n_channels
            translate[self.channel_axis] += (c - 1) / 2 * scale[self.channel_axis]
            scale[self.channel_axis] *= c
        return scale, translate


def make_source(data, *, rgb: bool = False, channel_axis: int | None = None,
                channel: int | None = None, multiscale=False, time_point: int | None = None,
                time_first: bool = False):
    """Describe an image layer's data as a stack of 2D slices.

    Parameters
    ----------
    data : array-like or sequence of array-like
        The layer's data (numpy, dask, zarr, ...); with ``multiscale``, its levels (napari's
        ``layer.data`` of a multiscale layer), level 0 the full resolution.
    rgb : bool
        The layer is RGB(A): the last axis holds 3 or 4 colour channels.
    channel_axis : int, optional
        Axis holding channels (not for RGB layers; not one of the last two axes).
    channel : int, optional
        Segment this channel of ``channel_axis`` alone, as a grey image (0-based; None:
        channels 0-2 as red, green, blue).
    multiscale : bool
        ``data`` is a pyramid: its full-resolution level ``data[0]`` is segmented, and the
        source's pixel grid (prompts, labels) is level 0's.
    time_point : int, optional
        Read a movie of volumes, ``(T, Z, Y, X)`` (``(T, Z, C, Y, X)`` with a channel axis),
        at this time point (clipped to 0..T-1): its first axis (but the channel axis and
        size-1 axes) is time, and the volume there is the stack. Without it such an image is
        refused, and so is a (T, Z, Y, X) one whose T is short enough to be channels
        (:data:`MAX_CHANNELS`) while no channel axis is chosen, unless ``time_first``.
    time_first : bool
        The first axis is known to be time (the file or napari names it, or the user said
        so): with ``time_point``, a (T, Z, Y, X) image of T <= :data:`MAX_CHANNELS` (a
        3-time-point light-sheet run) is a movie too.

    Raises
    ------
    UnsupportedImage
        With the reason and the next step.
    """
    if multiscale:
        if len(data) == 0:
            raise UnsupportedImage("the multiscale image has no levels; pick another layer")
        data = data[0]
    shape = tuple(int(s) for s in data.shape)
    if 0 in shape:
        raise UnsupportedImage(f"the image is empty (shape {shape}); pick another layer")
    ndim = len(shape) - (1 if rgb else 0)
    if rgb and channel_axis is not None:
        raise UnsupportedImage(
            "an RGB layer already has its colour channels in the last axis; set the channel "
            "axis to 'none'"
        )
    if channel_axis is not None:
        if channel_axis < 0:
            channel_axis += ndim
        if not 0 <= channel_axis < ndim - 2:
            raise UnsupportedImage(
                f"channel axis {channel_axis} cannot be used for an image of shape {shape}: it "
                "must be one of the axes before the last two (rows, columns); pick another "
                "axis or 'none'"
            )
    if channel is not None and (channel_axis is None or not 0 <= channel < shape[channel_axis]):
        raise UnsupportedImage(
            f"channel {channel} is not in the image: " + (
                "pick a channel axis first" if channel_axis is None else
                f"axis {channel_axis} holds channels 0-{shape[channel_axis] - 1}"))
    dropped = singleton_axes(shape, ndim, channel_axis)
    spatial = ndim - (1 if channel_axis is not None else 0) - len(dropped)
    axes = [a for a in range(ndim) if a != channel_axis and a not in dropped]
    time_axis = None
    if spatial == 4 and time_point is not None and (time_first or not (
            channel_axis is None and shape[axes[0]] <= MAX_CHANNELS)):
        time_axis, spatial = axes.pop(0), 3
        time_point = int(np.clip(time_point, 0, shape[time_axis] - 1))
    if spatial not in (2, 3):
        raise UnsupportedImage(_too_many_axes(shape, ndim, channel_axis, multiscale))
    fixed = {a: 0 for a in dropped} | ({} if time_axis is None else {time_axis: time_point})
    inner_axis = None if channel_axis is None else channel_axis - sum(
        a < channel_axis for a in fixed)
    def view_at(t: int | None) -> SliceView:  # (a movie's other time points: stack_at)
        at = fixed if t is None else {**fixed, time_axis: t}
        return SliceView(squeeze_axes(data, tuple(at), at), rgb=rgb, channel_axis=inner_axis,
                         two_d=spatial == 2, channel=channel)

    view = view_at(None)
    return ImageSource(
        stack=view,
        ndim=ndim,
        channel_axis=channel_axis,
        z_axis=axes[0] if spatial == 3 else None,
        rgb=rgb,
        channel=channel,
        dropped=dropped,
        time_axis=time_axis,
        time_point=None if time_axis is None else time_point,
        n_times=1 if time_axis is None else shape[time_axis],
        remake=None if time_axis is None else view_at,
        data=data,
    )


def time_point_words(commit, source: ImageSource | None) -> str:
    """E.g. " at time point 1 (time point 0 is shown: move the time slider to 1 to see it)"
    for an undo or redo of ``commit`` (a :class:`napari_sam.annotation.Commit`) made at
    another time point of a movie than ``source`` shows; "" otherwise."""
    at = getattr(commit, "time_point", None)
    if at is None or source is None or source.time_point is None or at == source.time_point:
        return ""
    return (f" at time point {at} (time point {source.time_point} is shown: move the time "
            f"slider to {at} to see it)")


def singleton_axes(shape: tuple[int, ...], ndim: int, channel_axis: int | None
                   ) -> tuple[int, ...]:
    """Axes of size 1 before (Y, X) left out while the image has more than three spatial
    axes, first ones first: (1, 6, Y, X) -> (0,), (6, 1, Y, X) -> (1,), (1, 1, 6, Y, X) ->
    (0, 1) (T = 1 or C = 1 as readers give them); (1, Y, X) keeps its axis (one slice)."""
    spatial = ndim - (1 if channel_axis is not None else 0)
    ones = [a for a in range(ndim - 2) if a != channel_axis and shape[a] == 1]
    return tuple(ones[: max(0, spatial - 3)])


class _Squeezed:
    """Lazy view of array-like ``data`` (zarr, ...) without its ``axes``, each fixed at its
    index in ``at`` (default 0: size-1 axes): indexing reads only what is asked for
    (``data[0]`` of a zarr array would read it all)."""

    def __init__(self, data, axes: tuple[int, ...], at: dict[int, int] | None = None):
        self._data, self._axes = data, axes
        self._at = {a: (at or {}).get(a, 0) for a in axes}
        self.shape = tuple(int(s) for a, s in enumerate(data.shape) if a not in axes)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(data.dtype)

    def __getitem__(self, key):
        key = list(key) if isinstance(key, tuple) else [key]
        key += [slice(None)] * (self.ndim - len(key))
        full = iter(key)
        return self._data[tuple(self._at[a] if a in self._axes else next(full)
                                for a in range(len(self._data.shape)))]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[()], dtype=dtype)


def squeeze_axes(data, axes: tuple[int, ...], at: dict[int, int] | None = None):
    """``data`` without its ``axes``, each at its index in ``at`` (default 0: size-1 axes;
    a movie's time axis at the time point); numpy and dask: indexed, lazy either way."""
    if not axes:
        return data
    at = {a: (at or {}).get(a, 0) for a in axes}
    if isinstance(data, np.ndarray) or type(data).__module__.startswith("dask"):
        return data[tuple(at.get(a, slice(None)) for a in range(data.ndim))]
    return _Squeezed(data, axes, at)


#: An axis this short may hold channels (more is more likely time or depth).
MAX_CHANNELS = 4


def _too_many_axes(shape: tuple[int, ...], ndim: int, channel_axis: int | None,
                   multiscale: bool = False) -> str:
    """Why an image with too many (or too few) axes cannot be segmented, and the next step:
    a channel axis only where an axis is channels; otherwise one time point (one volume), of
    the full-resolution level where ``multiscale`` (a pyramid's ``data[0]`` is that level)."""
    spatial = ndim - (1 if channel_axis is not None else 0)
    head = (f"the image has {spatial} spatial dimensions (shape {shape}); SAM segments a 2D "
            "image (Y, X) or one stack (Z, Y, X)")
    if spatial < 2:
        return head + ": pick another layer, or 'none' in 'Channel axis'"
    extra = [a for a in range(ndim - 2) if a != channel_axis]
    short = [a for a in extra if shape[a] <= MAX_CHANNELS]
    if channel_axis is not None:
        channels = (f" after taking axis {channel_axis} (size {shape[channel_axis]}) as "
                    "channels")
    else:
        looks = (f"; axis {short[0]} (size {shape[short[0]]}) is short enough to be "
                 "channels" if short else "")
        channels = (f". If one axis holds channels (colours or stains), make it the channel "
                    f"axis in 'Channel axis'{looks}. If it is time (or any axis that is not channels), do not "
                    "pick it as channels: that would mix its frames as colours")
    instead = "" if channel_axis is not None else " instead"
    # napari's console defines 'viewer', not 'layer'; the new layer keeps the voxel size,
    # position and units of the other axes (without them it is drawn off the original and
    # its labels are saved in pixels)
    return (f"{head}{channels}. Take one time point (one volume) as its own layer{instead}, "
            "e.g. for time point 0 select the layer and type in napari's console: "
            "layer = viewer.layers.selection.active; "
            f"viewer.add_image(layer.data[0]{'[0]' * multiscale}, scale=layer.scale[1:], "
            "translate=layer.translate[1:], units=layer.units[1:], name=layer.name + ' t0')"
            "; then pick that layer in 'Image'. To segment every time point of a movie file, "
            "each as its own volume, run `napari-sam auto movie.tif -o out/` in a shell "
            "(or `napari-sam segment` with prompts that have a 't' column)")


def channels_hint(source: ImageSource | None, name: str) -> str:
    """A status note when the stack axis of image ``name`` is short enough to be channels
    (a (3, Y, X) channel-first image read as 3 slices: propagation would run across its
    channels) and no channel axis is picked: where to pick it; "" otherwise."""
    if (source is None or source.rgb or source.channel_axis is not None or not source.is_3d
            or not 1 < source.n_slices <= MAX_CHANNELS):
        return ""
    return (f" Axis {source.z_axis} of '{name}' (size {source.n_slices}) is read as "
            f"{source.n_slices} slices: if it holds channels (colours or stains), pick it in "
            "'Channel axis'.")
