"""The dock's *Device* and *Precision* boxes (a mixin of
:class:`~napari_sam._qt.widget.SamWidget`): while PyTorch is imported in the background
(:mod:`napari_sam._qt.torch_import`) they offer "auto" and "cpu", say that PyTorch is loading
and apply a change once it is imported; then the devices found here (CUDA, MPS) are listed.
"""

from __future__ import annotations

from napari_sam.annotate.model_choice import device_choices, device_line

from .notify import guarded
from .torch_import import torch_import

__all__ = ["LOADING_TORCH", "DeviceBox"]

#: The line under 'Device' while torch is being imported
LOADING_TORCH = "loading PyTorch ..."


class DeviceBox:
    """The *Device* and *Precision* handlers (``self._device``, ``self._precision`` and
    ``self._device_info`` are the widget's; ``self._torch`` is the process's
    :class:`~napari_sam._qt.torch_import.TorchImport`)."""

    def _start_torch_import(self) -> None:
        """Import torch in the background; the device list and line follow it."""
        self._torch = torch_import()
        self._torch.then(self._on_torch_imported)

    def _on_torch_imported(self) -> None:
        if self._closed:
            return
        if self._torch.error is not None:  # nothing can run: say it where the user looks
            c = self.controller
            c.status = (f"PyTorch cannot be imported ({self._torch.error}), so no model can "
                        "run: reinstall torch in this environment, then restart napari.")
            c.notify_status(c.status)
        else:
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
        self._apply_choice(self._on_device_changed, self.controller.set_device, self._device)

    @guarded
    def _on_precision_changed(self):
        self._apply_choice(self._on_precision_changed, self.controller.set_precision,
                           self._precision)

    def _apply_choice(self, handler, setter, box) -> None:
        """``setter(box's entry)``, then the line under Device; before torch is imported,
        ``handler`` runs again once it is (resolving a device imports it); nothing once the
        dock is closed (napari quit meanwhile: its boxes are deleted)."""
        if self._closed:
            return
        if not self._torch.done:
            self._torch.then(handler, eager=True)
            return
        try:
            setter(box.currentText())
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
