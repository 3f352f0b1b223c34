"""The dock's *Device* and *Precision* boxes, and PyTorch imported off the main thread.

Importing torch takes 2-5 s on a busy 2-core machine. The dock opened in that time with napari
frozen (the devices were listed, and the model cache keys resolved, on the main thread), so
the dock starts :class:`TorchImport` instead: the boxes offer "auto" and "cpu" and say that
PyTorch is loading, the first preload waits for it, and once torch is imported the devices
found here (CUDA, MPS) are listed (a mixin of :class:`~napari_sam._qt.widget.SamWidget`).
"""

from __future__ import annotations

import sys
import threading

from qtpy.QtCore import QObject, QTimer, Signal, Slot

from napari_sam.annotate.model_choice import device_choices, device_line

from .notify import guarded

__all__ = ["LOADING_TORCH", "DeviceBox", "TorchImport"]

#: The line under 'Device' while torch is being imported
LOADING_TORCH = "loading PyTorch ..."


class TorchImport(QObject):
    """Import torch in a background thread; :meth:`then` runs a callable on the main thread
    once it is imported (at once when it was already). A failed import is kept in
    :attr:`error` (the first job then says why torch cannot be used)."""

    _finished = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.error: BaseException | None = None
        self.done = "torch" in sys.modules
        self._waiting: list = []
        if not self.done:
            self._finished.connect(self._on_finished)  # queued: this object's thread
            # started once the dock is shown: importing beside the dock's construction made
            # both wait for the GIL (the dock took as long to open as with torch imported)
            QTimer.singleShot(0, self._start)

    def _start(self) -> None:
        if "torch" in sys.modules:
            self._on_finished()
        else:
            threading.Thread(target=self._run, name="napari-sam import torch",
                             daemon=True).start()

    def _run(self) -> None:
        try:
            import torch  # noqa: F401
        except BaseException as err:  # noqa: BLE001 - said by the first job that needs it
            self.error = err
        self._finished.emit()

    @Slot()
    def _on_finished(self) -> None:
        self.done = True
        waiting, self._waiting = self._waiting, []
        for fn in waiting:
            fn()

    def then(self, fn) -> None:
        """Run ``fn()`` on the main thread once torch is imported (now, if it is)."""
        if self.done:
            fn()
        else:
            self._waiting.append(fn)


class DeviceBox:
    """The *Device* and *Precision* handlers (``self._device``, ``self._precision`` and
    ``self._device_info`` are the widget's; ``self._torch`` is its :class:`TorchImport`)."""

    def _start_torch_import(self) -> None:
        """Import torch in the background; the device list and line follow it."""
        self._torch = TorchImport(self)
        self._torch.then(self._on_torch_imported)

    def _on_torch_imported(self) -> None:
        if self._closed:
            return
        if self._torch.error is None:
            names = device_choices()
            box, current = self._device, self._device.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems(names)
            box.setCurrentIndex(max(box.findText(current), 0))
            box.blockSignals(False)
        self._update_device_info()

    @guarded
    def _on_device_changed(self):
        try:
            self.controller.set_device(self._device.currentText())
        finally:
            self._update_device_info()

    @guarded
    def _on_precision_changed(self):
        try:
            self.controller.set_precision(self._precision.currentText())
        finally:
            self._update_device_info()

    def _update_device_info(self):
        """The line under Device: the device, the precision and why (device.describe)."""
        torch_import = getattr(self, "_torch", None)
        if torch_import is not None and not torch_import.done:
            self._device_info.setText(LOADING_TORCH)
            return
        if torch_import is not None and torch_import.error is not None:
            self._device_info.setText(f"not usable: PyTorch cannot be imported "
                                      f"({torch_import.error}); reinstall torch")
            return
        self._device_info.setText(
            device_line(self._device.currentText(), self._precision.currentText())
        )
