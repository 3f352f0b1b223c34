"""PyTorch imported in a background thread, once per napari process.

Importing torch takes 2-5 s on a busy 2-core machine; the dock opened in that time with napari
frozen (the devices were listed and the model cache keys resolved on the main thread). The dock
now starts :func:`torch_import` once it is shown; what needs torch on the main thread (the
first preload, a click's preview, a device or precision change) waits for it with
:meth:`TorchImport.then` instead of importing it there.
"""

from __future__ import annotations

import sys
import threading

from qtpy.QtCore import QObject, QTimer, Signal, Slot

__all__ = ["TorchImport", "torch_import"]

_IMPORT: TorchImport | None = None


def torch_import() -> TorchImport:
    """The process's :class:`TorchImport` (started on first use; done at once when torch
    is imported already). It has no parent: a dock closed meanwhile does not delete it."""
    global _IMPORT
    if _IMPORT is None:
        _IMPORT = TorchImport()
    return _IMPORT


class TorchImport(QObject):
    """Import torch in a background thread; :meth:`then` runs a callable on the main thread
    once it is imported (at once when it was already). A failed import is kept in
    :attr:`error` (the Device line and the status line then say why torch cannot be used)."""

    _finished = Signal()

    def __init__(self):
        super().__init__()
        self.error: BaseException | None = None
        self.done = "torch" in sys.modules
        self._started = False
        self._waiting: list = []
        if not self.done:
            self._finished.connect(self._on_finished)  # queued: this object's thread
            # started once the dock is shown: importing beside the dock's construction made
            # both wait for the GIL (the dock took as long to open as with torch imported)
            QTimer.singleShot(0, self._start)

    def _start(self) -> None:
        self._started = True
        if "torch" in sys.modules:
            self._on_finished()
        else:
            threading.Thread(target=self._run, name="napari-sam import torch",
                             daemon=True).start()

    def _run(self) -> None:
        try:
            import torch  # noqa: F401
        except BaseException as err:  # noqa: BLE001 - said in the Device line and the status
            self.error = err
        try:
            self._finished.emit()
        except RuntimeError:  # Qt deleted it (napari quit meanwhile): nobody waits
            pass

    @Slot()
    def _on_finished(self) -> None:
        self.done = True
        waiting, self._waiting = self._waiting, []
        for fn in waiting:
            fn()

    def then(self, fn, eager: bool = False) -> None:
        """Run ``fn()`` on the main thread once torch is imported (now, if it is). ``eager``
        (an action that needs torch: a preview, a device change): when no event loop has run
        since the import was asked for (a script driving the dock line by line, without
        ``wait()``), torch is imported here and ``fn()`` runs now; without an event loop the
        thread would not start, nor its end be delivered."""
        if eager and not (self.done or self._started):
            try:
                import torch  # noqa: F401
            except BaseException as err:  # noqa: BLE001 - said as the thread's error is
                self.error = err
            self.done = True
        if self.done:
            fn()
        else:
            self._waiting.append(fn)
