"""The dock's 'Channel axis' and 'Channel' boxes: which axis of a multichannel image layer
holds channels, and what SAM segments of it.

napari's reader opens a multichannel TIFF (e.g. ``(Z, C, Y, X)`` nuclei and membranes) as
one layer with a channel slider, shown one channel at a time in grey. SAM segments either one
channel as a grey image (what the user sees: the default is the channel shown when the axis
is picked) or channels 0-2 as red, green, blue ("all"). Mixing a membrane stain into the
nuclei's colours halves the masks' quality with the demo model (one click per nucleus: 0.75
alone and 0.39 mixed on the development stack with a membrane-like second channel, session
31; 0.996 and 0.44 on the scene of tests/_qt/test_channels_dock.py), so one channel is the
default.
"""

from __future__ import annotations

import numpy as np

from napari_sam.annotate.image_source import segmented_words

from .controls import combo

__all__ = ["ALL_CHANNELS", "ChannelBoxes", "file_channel_axis"]

#: The start of the 'Channel' entry that mixes the first three channels as red, green, blue
#: (the rest says which: :func:`~napari_sam.annotate.image_source.segmented_words`).
ALL_CHANNELS = "all: "


class ChannelBoxes:
    """The two combo boxes; ``changed()`` runs when the user (or code) picks another choice.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the channel shown is read (the dims slider of the channel axis).
    changed : callable
        Called with no argument after a choice changed (the channel list already follows a
        new axis).
    """

    def __init__(self, viewer, changed):
        self._viewer = viewer
        self._changed = changed
        self._layer = None
        self._chosen: dict = {}  # layer id -> (axis, channel) last picked for that layer
        self.axis = combo(
            tip="Axis holding channels (stains, colours) of a multichannel image; 'none' for "
                "grey or RGB images.",
            changed=self._on_axis,
        )
        self.channel = combo(
            tip="What SAM segments: one channel as a grey image (the stain of the objects you "
                "want), or channels 0-2 as red, green, blue.",
            changed=changed,
        )
        self.channel.setEnabled(False)

    def add_rows(self, form) -> None:
        """Add both boxes to a ``QFormLayout``."""
        form.addRow("Channel axis", self.axis)
        form.addRow("Channel", self.channel)

    def choice(self) -> tuple[int | None, int | None]:
        """(channel axis, channel): (None, None) without an axis; channel None is "all"."""
        axis = self.axis.currentData()
        return axis, (None if axis is None else self.channel.currentData())

    def refresh(self, layer) -> None:
        """List the axes of image ``layer`` (napari layer or None): the choice stays for the
        same layer (where it still fits); another layer gets the choice last made for it,
        else none (a volume picked after a (C, Y, X) image kept its axis 0 as channels)."""
        if self._layer is not None:
            self._chosen[_layer_key(self._layer)] = self.choice()
        same = layer is not None and self._layer is not None and (
            _layer_key(layer) == _layer_key(self._layer))
        self._layer = layer
        current = self.choice() if same else self._chosen.get(
            None if layer is None else _layer_key(layer), (None, None))
        box = self.axis
        box.blockSignals(True)
        box.clear()
        box.addItem("none", None)
        if layer is not None and not getattr(layer, "rgb", False):
            for axis in range(max(0, layer.ndim - 2)):
                box.addItem(f"axis {axis} (size {layer.data.shape[axis]})", axis)
        box.setCurrentIndex(max(box.findData(current[0]), 0))
        box.blockSignals(False)
        self._fill_channels(current[1])

    def set_choice(self, axis: int | None, channel: int | None) -> None:
        """Pick ``axis`` and ``channel`` without calling ``changed()``."""
        self.axis.blockSignals(True)
        self.axis.setCurrentIndex(max(self.axis.findData(axis), 0))
        self.axis.blockSignals(False)
        self._fill_channels(channel)

    def _on_axis(self) -> None:
        self._fill_channels(self.shown_channel())
        self._changed()

    def _fill_channels(self, channel: int | None) -> None:
        """The 'Channel' entries of the axis picked, ``channel`` current (None: "all")."""
        axis, layer, box = self.axis.currentData(), self._layer, self.channel
        box.blockSignals(True)
        box.clear()
        if axis is not None and layer is not None and axis < layer.ndim:
            for c in range(int(layer.data.shape[axis])):
                box.addItem(f"channel {c}", c)
            box.addItem(ALL_CHANNELS + segmented_words(axis, None, int(layer.data.shape[axis])),
                        None)
            index = box.findData(channel) if channel is not None else box.count() - 1
            box.setCurrentIndex(max(index, 0))
        box.setEnabled(axis is not None)
        box.blockSignals(False)

    def shown_channel(self) -> int | None:
        """The channel the viewer shows on the axis picked (what the user looks at)."""
        axis, layer = self.axis.currentData(), self._layer
        if axis is None or layer is None:
            return None
        try:
            where = np.asarray(layer.world_to_data(self._viewer.dims.point), dtype=float)
            shown = int(round(float(where[axis])))
        except (IndexError, TypeError, ValueError):
            shown = 0
        return int(np.clip(shown, 0, layer.data.shape[axis] - 1))


def _layer_key(layer):
    """A napari layer's identity (the same for napari's proxies of it)."""
    from .layers import unwrap

    layer = unwrap(layer)
    return getattr(layer, "unique_id", id(layer))


def file_channel_axis(layer) -> tuple[int, str] | None:
    """The channel axis of image ``layer`` as its file's metadata names it (napari's reader
    drops a TIFF's axes): ``(axis, axes)``, e.g. ``(1, "ZCYX")``; None for a layer not read
    from a file, a file without named axes or channels, or a layer whose axes differ from
    the file's."""
    from napari_sam.io import file_axes

    path = getattr(getattr(layer, "source", None), "path", None)
    axes = file_axes(path) if path and not getattr(layer, "rgb", False) else None
    if axes is None or "C" not in axes[:-2] or len(axes) != layer.ndim:
        return None
    return axes.index("C"), axes
