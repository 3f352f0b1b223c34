"""Whether the first axis of a 4D image layer is time (a movie of volumes) or channels.

A (T, Z, Y, X) light-sheet run of 3 time points has the shape of a (C, Z, Y, X) image of 3
stains. Where napari (the layer's ``axis_labels``) or the image's file (an ImageJ ``TZYX``
TIFF, which napari's own reader opens with the labels ``-4 .. -1``) names the first axis
time, the dock takes the image as a movie; so it does where napari gives that axis a unit of time
(``units=("second", "um", "um", "um")``). Where nothing says (an array added from Python),
the dock asks, with two buttons below 'Channel axis' (:class:`MovieAxisRow`): *Time points*
takes it as a movie (remembered for that layer), *Channels* picks it in 'Channel axis'. It
refused such an image before, also when the file named its axes ``TZYX``.

It also says what the stack axis of a 3D stack is (*Stack axis is*: z, a volume, or t, a time
series): what napari's axis labels or units name it (:func:`stack_axis_named`), and what the
dock picks for each image (:func:`stack_axis_for`), each image layer keeping its own and its
labels layers theirs (:class:`StackAxes`).
"""

from __future__ import annotations

import weakref

from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from napari_sam.annotate.image_source import MAX_CHANNELS, singleton_axes

from .layers import unwrap

__all__ = ["MovieAxisRow", "StackAxes", "axis_labels", "first_axis", "first_axis_named",
           "movie_question", "stack_axis_for", "stack_axis_named", "time_not_first"]

#: napari axis labels that name time, and channels (lower case)
TIME_NAMES = frozenset({"t", "time", "frame", "frames", "time point", "timepoint"})
CHANNEL_NAMES = frozenset({"c", "channel", "channels"})
#: napari axis labels that name the depth of a volume (lower case)
DEPTH_NAMES = frozenset({"z", "depth", "plane", "planes", "slice", "slices"})


def first_axis(layer, channel_axis: int | None) -> int | None:
    """The layer axis that is time in a movie of volumes: the first axis of a 4D grey
    image (5D with ``channel_axis``), size-1 axes aside; None for any other image."""
    if layer is None or getattr(layer, "rgb", False):
        return None
    axes = _image_axes(layer, channel_axis)
    return axes[0] if len(axes) == 4 else None


def _image_axes(layer, channel_axis: int | None) -> list[int]:
    """The axes of image ``layer`` SAM sees: size-1 axes, ``channel_axis`` and an RGB
    layer's colour axis (last) aside."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(s) for s in data.shape)[: -1 if getattr(layer, "rgb", False) else None]
    dropped = singleton_axes(shape, len(shape), channel_axis)
    return [a for a in range(len(shape)) if a != channel_axis and a not in dropped]


def _is_default_label(label) -> bool:
    """Whether napari's axis ``label`` is one napari made up ("-4" .. "-1", "0", ...)."""
    try:
        int(str(label).strip())
    except ValueError:
        return str(label).strip() == ""
    return True


def axis_labels(layer, viewer=None) -> tuple[str, ...]:
    """napari's labels of the axes of ``layer``, one per layer axis: the layer's own
    (``axis_labels=("t", "z", "y", "x")``), else, where the layer has napari's made-up
    label ("-4"), the label the user gave that axis in ``viewer`` (``viewer.dims.
    axis_labels``, also typed in napari's slider names): napari does not copy those to the
    layer. A layer of fewer dimensions than the viewer lines up with its last axes.

    napari copies the labels of the viewer's layers to ``viewer.dims``: a viewer label
    that another layer gives that axis (:func:`_labels_of_layers`) is that layer's, not
    the user's (a (Z, Y, X) volume beside a time-lapse labelled ("t", "y", "x") was taken
    for a time series)."""
    own = tuple(str(a) for a in (getattr(layer, "axis_labels", None) or ()))
    dims = getattr(viewer, "dims", None)
    shown = tuple(str(a) for a in (getattr(dims, "axis_labels", None) or ()))
    ndim = int(getattr(layer, "ndim", len(own)))
    if len(own) != ndim:
        own = ("",) * ndim
    lead = len(shown) - ndim
    if lead < 0:
        return own
    theirs = _labels_of_layers(viewer, len(shown))
    return tuple(shown[lead + a] if _is_default_label(own[a])
                 and not _is_default_label(shown[lead + a])
                 and shown[lead + a] not in theirs[lead + a] else own[a] for a in range(ndim))


def _labels_of_layers(viewer, ndim: int) -> list[set[str]]:
    """For each of the ``ndim`` axes of ``viewer``: the labels its layers give it
    themselves (not napari's made-up ones), each layer lined up with the viewer's last
    axes as napari lines it up."""
    found: list[set[str]] = [set() for _ in range(ndim)]
    for other in getattr(viewer, "layers", None) or ():
        labels = tuple(str(a) for a in (getattr(other, "axis_labels", None) or ()))
        for a, label in enumerate(labels[-ndim:] if ndim else ()):
            if not _is_default_label(label):
                found[ndim - min(len(labels), ndim) + a].add(label)
    return found


def _axis_named(layer, axis: int, viewer=None) -> tuple[str, str, object]:
    """napari's label of ``layer``'s ``axis`` (:func:`axis_labels`) as given and in lower
    case ("" where it has none), and its unit (None where it has none)."""
    labels = axis_labels(layer, viewer)
    units = tuple(getattr(layer, "units", None) or ())
    label = labels[axis] if axis < len(labels) else ""
    return label, str(label).strip().lower(), units[axis] if axis < len(units) else None


def first_axis_named(layer, channel_axis: int | None,
                     viewer=None) -> tuple[bool, str] | None:
    """What names the first axis (:func:`first_axis`) of image ``layer``: ``(is time,
    words)``, e.g. ``(True, "its file names its axes TZYX")`` or ``(False, "napari names
    axis 0 'c'")``; None where nothing does (napari's default labels, no file axes).
    ``viewer``: the labels the user gave its axes count too (:func:`axis_labels`)."""
    axis = first_axis(layer, channel_axis)
    if axis is None:
        return None
    label, name, unit = _axis_named(layer, axis, viewer)
    if name in TIME_NAMES or name in CHANNEL_NAMES:
        return name in TIME_NAMES, f"napari names axis {axis} '{label}'"
    if is_time_unit(unit):
        return True, f"napari gives axis {axis} the unit '{unit}'"
    if time_not_first(layer, channel_axis, viewer):  # (z, t, y, x): not time, refused (not asked)
        return False, "napari names time another axis"
    from napari_sam.io import file_axes

    path = getattr(getattr(layer, "source", None), "path", None)
    axes = file_axes(path) if path else None
    if axes is None or len(axes) != layer.ndim or axes[axis] not in "TC":
        return None
    return axes[axis] == "T", f"its file names its axes {axes}"


def stack_axis_named(layer, channel_axis: int | None,
                     viewer=None) -> tuple[str, str] | None:
    """What napari names the stack axis of a 3D stack ``layer``, grey or RGB (the first of its
    three axes, size-1 axes and ``channel_axis`` aside): ``("t", words)`` for time (its
    ``axis_labels``, e.g. ``("t", "y", "x")``, or a unit of time), ``("z", words)`` for depth
    (labelled "z"), e.g. ``("t", "napari names axis 0 of 'cells' 't'")``; None where it does
    not (napari's default labels "-3", "-2", "-1"), and for any other image. A (T, Y, X)
    array so labelled was propagated as a volume: the fade rule for volumes cut a cell that
    bleached over time, where the same file's TYX axes made it a time series. An RGB
    layer's colour axis (last) is not one of its three (an RGB (T, Y, X, 3) time-lapse was
    passed over: it stayed z). ``viewer``: the labels the user gave its axes count too
    (:func:`axis_labels`)."""
    axes = [] if layer is None else _image_axes(layer, channel_axis)
    if len(axes) != 3:
        return None
    label, name, unit = _axis_named(layer, axes[0], viewer)
    if name in TIME_NAMES or name in DEPTH_NAMES:
        return ("t" if name in TIME_NAMES else "z",
                f"napari names axis {axes[0]} of '{layer.name}' '{label}'")
    if is_time_unit(unit):
        return "t", f"napari gives axis {axes[0]} of '{layer.name}' the unit '{unit}'"
    return None


class StackAxes:
    """What *Stack axis is* says for each image layer: an image's own (z: a volume, t: a time
    series), not the last image's. A (T, Y, X) time series picked, then an unlabelled volume,
    kept t: the volume was propagated with the rules for time. Kept by the layer itself
    (napari hands plugins proxies, :func:`~.layers.unwrap`), weakly: a removed layer does not
    stay alive for it. ``unplaced``: the kind picked while no image, or a 2D image (it has no
    stack axis), was picked (the first stack picked that nothing names takes it), else None."""

    def __init__(self):
        self._kinds = weakref.WeakKeyDictionary()
        self._owners = weakref.WeakKeyDictionary()  # labels layer -> weakref to its image
        self.unplaced: str | None = None

    def remember(self, layer, kind: str) -> None:
        """Keep ``kind`` ("z" or "t") as the stack axis of image ``layer`` (None: no image
        picked yet, or a 2D one: :attr:`unplaced`)."""
        if layer is None:
            self.unplaced = kind
        else:
            self._kinds[unwrap(layer)] = kind
            self.unplaced = None

    def recall(self, layer) -> str | None:
        """The stack axis kept for ``layer``; None for a layer never picked."""
        return None if layer is None else self._kinds.get(unwrap(layer))

    def labels_of(self, image, labels, open_layers) -> list:
        """Those of the labels layers ``labels`` (of the shape of image ``image``) whose
        stack axis is the one of ``image``: each belongs to the image picked when it was
        first marked (:meth:`~.widget.SamWidget._mark_stack_axis`) while that image is open
        (in ``open_layers``), else it becomes ``image``'s. Picking a volume beside a time
        series of its shape marked the time series' labels z: saved as ZYX, their frames
        were read as slices."""
        image = unwrap(image)
        shown = {id(unwrap(layer)) for layer in open_layers}
        mine = []
        for layer in map(unwrap, labels):
            ref = self._owners.get(layer)
            owner = None if ref is None else ref()
            if owner is None or id(owner) not in shown:
                self._owners[layer] = weakref.ref(image)
                owner = image
            if owner is image:
                mine.append(layer)
        return mine


def stack_axis_for(name: str, named: tuple[str, str] | None, *, remembered: str | None = None,
                   movie: bool = False, default: str | None = "z") -> tuple[str, str] | None:
    """*Stack axis is* for the image layer ``name`` and why, e.g. ``("z", "nothing names the
    axes of 'vol'")``: the kind ``remembered`` for it (:class:`StackAxes`: an image picked
    again keeps its own, also one the user picked by hand), else the kind its file or
    napari's axis labels name (``named``: kind and words, :func:`stack_axis_named`), else z
    for a ``movie`` of volumes (each time point holds a volume), else ``default`` (z, or
    what was picked before any image was; None: axes renamed that name nothing leave the
    box as it is)."""
    if remembered is not None:
        return (named if named is not None and named[0] == remembered
                else (remembered, f"as set for '{name}' before"))
    if named is not None:
        return named
    if movie:
        return "z", f"each time point of '{name}' holds a volume (a movie of volumes)"
    if default is None:
        return None
    return default, (f"nothing names the axes of '{name}'" if default == "z" else
                     f"it was picked before '{name}' was")


def time_not_first(layer, channel_axis: int | None, viewer=None) -> str | None:
    """Why a 4D grey image ``layer`` whose napari ``axis_labels`` name time on an axis but
    the first of its four (size-1 axes and ``channel_axis`` aside) cannot be segmented as a
    movie, e.g. a (Z, T, Y, X) array labelled ``("z", "t", "y", "x")``: the dock takes the
    first axis as time (each "volume" would be the frames of one slice), or asked whether it
    held channels; None for any other image. ``viewer``: the labels the user gave its
    axes count too (:func:`axis_labels`)."""
    axis = first_axis(layer, channel_axis)
    if axis is None:
        return None
    labels = axis_labels(layer, viewer)
    if len(labels) != layer.ndim or labels[axis].strip().lower() in TIME_NAMES:
        return None
    later = [a for a in range(axis + 1, layer.ndim - 2) if a != channel_axis
             and labels[a].strip().lower() in TIME_NAMES]
    if not later:
        return None
    t = later[0]
    order = list(labels)
    order.insert(axis, order.pop(t))
    return (f"napari names axis {t} of '{layer.name}' '{labels[t]}' (its axes are "
            f"{', '.join(labels)}), but the dock takes a movie of volumes with time first, "
            f"(T, Z, Y, X): it would take axis {axis} ('{labels[axis]}') as time. Put time "
            f"first, e.g. viewer.add_image(np.moveaxis(data, {t}, {axis}), "
            f"axis_labels={tuple(order)}).")


def is_time_unit(unit) -> bool:
    """Whether napari's ``unit`` of an axis (a pint unit) is one of time (second, minute,
    ...)."""
    try:
        return str(unit.dimensionality) == "[time]"
    except AttributeError:  # (no unit, or not pint's)
        return False


def is_ambiguous(layer, channel_axis: int | None, chosen: bool, viewer=None) -> bool:
    """Whether the dock must ask what the first axis of ``layer`` is: a 4D grey image
    whose first axis is short enough to be channels, without a channel axis, not named by
    napari (the layer's or ``viewer``'s axis labels) or the file, and not ``chosen`` as
    time by the user."""
    axis = first_axis(layer, channel_axis)
    if axis is None or chosen or channel_axis is not None:
        return False
    return (int(layer.data[0].shape[axis] if getattr(layer, "multiscale", False)
                else layer.data.shape[axis]) <= MAX_CHANNELS
            and first_axis_named(layer, None, viewer) is None)


def movie_question(layer) -> str:
    """The status line asking what the first axis of ``layer`` is (:func:`is_ambiguous`)."""
    axis = first_axis(layer, None)
    size = layer.data.shape[axis] if not getattr(layer, "multiscale", False) else (
        layer.data[0].shape[axis])
    return (f"Is axis {axis} of '{layer.name}' (size {size}) time or channels? Neither napari "
            f"nor a file names it, and it is short enough to be either. Press 'Time points' "
            f"under 'Channel axis' if it holds {size} time points (a movie of volumes: SAM "
            "segments the volume at the time point the time slider shows), or 'Channels' if "
            "it holds stains (then pick the one to segment in 'Channel').")


class MovieAxisRow(QWidget):
    """The question's two buttons (hidden unless the picked image is ambiguous).

    Parameters
    ----------
    on_time, on_channels : callable
        Called with no argument when *Time points* or *Channels* is pressed.
    """

    def __init__(self, on_time, on_channels):
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.text = QLabel("First axis is")
        self.time = QPushButton("Time points")
        self.time.setToolTip("The first axis holds time points: segment the image as a movie "
                             "of volumes, at the time point the time slider shows.")
        self.channels = QPushButton("Channels")
        self.channels.setToolTip("The first axis holds channels (stains): pick it in "
                                 "'Channel axis'.")
        self.time.clicked.connect(lambda *_: on_time())
        self.channels.clicked.connect(lambda *_: on_channels())
        for w in (self.text, self.time, self.channels):
            row.addWidget(w)
        self.setVisible(False)

    def ask(self, axis: int | None) -> None:
        """Show the buttons for layer ``axis`` (None: hide them)."""
        if axis is not None:
            self.text.setText(f"Axis {axis} is")
        self.setVisible(axis is not None)
