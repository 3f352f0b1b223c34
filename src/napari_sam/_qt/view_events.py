"""The viewer's view events the dock follows (`ViewEvents`): the 2D/3D switch, the axis
order and grid mode (whether clicks can prompt), and the slice shown (the status line names the slice of
a preview seen from another one); connected while the dock is open."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ViewEvents"]


class ViewEvents:
    """Connect ``on_view`` to ``dims``' ``ndisplay`` and ``order`` events (and to the
    ``enabled`` and ``stride`` events of ``grid``, the viewer's grid model) and ``on_slice``
    to its ``current_step`` event, until :meth:`close`."""

    def __init__(self, dims, on_view: Callable, on_slice: Callable, grid=None):
        ev = dims.events
        self._links = [(ev.ndisplay, on_view), (ev.order, on_view), (ev.current_step, on_slice)]
        if grid is not None:
            self._links += [(grid.events.enabled, on_view), (grid.events.stride, on_view)]
        for event, slot in self._links:
            event.connect(slot)

    def close(self) -> None:
        """Disconnect (once)."""
        for event, slot in self._links:
            event.disconnect(slot)
        self._links = []
