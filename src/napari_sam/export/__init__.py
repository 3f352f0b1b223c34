"""Export models out of PyTorch, and run the exported files.

* :mod:`~napari_sam.export.onnx_graphs`: the interface (file, input and output names) and
  the traced wrappers :class:`SamOnnxDecoder` (prompt encoder + mask decoder in Meta's ONNX
  interface) and :class:`SamOnnxEncoder`.
* :mod:`~napari_sam.export.onnx_export`: :func:`export_onnx` writes ``decoder.onnx``,
  ``encoder.onnx`` and ``export.json``.
* :mod:`~napari_sam.export.onnx_runtime`: :class:`OnnxDecoder` decodes prompts with an
  exported decoder in onnxruntime, taking what ``Predictor.predict`` takes (the same prompt
  checks) and returning what ``Predictor.predict(..., boundary="threshold")`` returns.

Both need ``pip install "napari-sam-stacks[onnx]"`` (onnx, onnxruntime); docs/onnx.md.
"""

from .onnx_export import (
    OnnxExport,
    UnlistedPartError,
    check_exportable,
    check_output_folder,
    export_onnx,
)
from .onnx_graphs import (
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    METADATA_FILE,
    MIN_OPSET,
    SamOnnxDecoder,
    SamOnnxEncoder,
)
from .onnx_runtime import OnnxDecoder, decoder_digest, onnx_cache_folder

__all__ = [
    "DECODER_FILE",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "ENCODER_FILE",
    "METADATA_FILE",
    "MIN_OPSET",
    "OnnxDecoder",
    "OnnxExport",
    "SamOnnxDecoder",
    "SamOnnxEncoder",
    "UnlistedPartError",
    "check_exportable",
    "check_output_folder",
    "decoder_digest",
    "export_onnx",
    "onnx_cache_folder",
]
