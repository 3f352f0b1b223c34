"""Decode prompts with an exported ONNX decoder in onnxruntime, in our API's terms.

:class:`OnnxDecoder` takes what :meth:`napari_sam.Predictor.predict` takes (an
:class:`~napari_sam.predictor.ImageEmbedding` and napari (row, col) points, a box, a
low-resolution mask), checks them with the same :mod:`napari_sam.prompts` checks (the same
errors; a box partly outside the image clipped), and returns the ``(masks, scores, logits)``
of ``Predictor.predict(..., boundary="threshold")``, computed by the decoder that
:func:`~napari_sam.export.export_onnx` wrote (masks cut at the model's threshold, as Meta's
interface does; ``Predictor`` cuts the bundled demo model's masks on image edges by
default, and does so after this decoder for ``backend="onnx"``). It is the decoder of
``Predictor(backend="onnx")``, which is not the default: on this project's 2-core CPU the
PyTorch decoder answers a click sooner (docs/onnx.md, "Speed").
Needs ``pip install "napari-sam-stacks[onnx]"``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from napari_sam.models.registry import cache_dir
from napari_sam.preprocess import boxes_to_model, points_to_model
from napari_sam.prompts import check_box, check_mask_input, check_points, warn_only_negative

from .onnx_export import check_exportable, export_onnx
from .onnx_graphs import DECODER_FILE, DECODER_INPUTS, DECODER_OUTPUTS, METADATA_FILE

__all__ = ["OnnxDecoder", "decoder_digest", "onnx_cache_folder"]

_INSTALL_HINT = 'install the ONNX extra: pip install "napari-sam-stacks[onnx]"'


def decoder_digest(model) -> str:
    """sha256 (first 12 hex digits) of the prompt encoder's and mask decoder's weights: two
    models with one ``model_id`` but other weights (a model finetuned in memory, random
    weights built from one config) get different exports."""
    import hashlib

    h = hashlib.sha256()
    for prefix in ("prompt_encoder", "mask_decoder"):
        for name, tensor in getattr(model, prefix).state_dict().items():
            h.update(f"{prefix}.{name}{tuple(tensor.shape)}".encode())
            h.update(tensor.detach().to("cpu", copy=True).float().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def onnx_cache_folder(model) -> Path:
    """Where :meth:`OnnxDecoder.for_model` keeps the decoder export of ``model`` (a Sam): a
    folder under the model cache (``NAPARI_SAM_CACHE_DIR`` or the platform cache) named after
    its ``model_id`` and :func:`decoder_digest`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model.model_id)
    return cache_dir() / "onnx" / f"{name}-{decoder_digest(model)}"


def _read_metadata(meta_file: Path, onnx_file: Path) -> dict:
    """``export.json`` of an export, checked to list ``onnx_file`` as its decoder: a decoder
    it does not list (another model's, another tool's) is refused, so a folder never pairs
    one model's metadata with another's decoder."""
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        files = meta.get("files") or {}
        if not isinstance(files, dict):
            raise TypeError(f"'files' is a {type(files).__name__}, not a mapping of parts")
        listed = str(files.get("decoder", ""))
        missing = [k for k in ("model_id", "input_size", "low_res_size") if k not in meta]
        if missing:
            raise KeyError(", ".join(missing))
        for key in ("input_size", "low_res_size"):
            if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 1:
                raise ValueError(f"'{key}' is {meta[key]!r}, not a positive whole number")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{meta_file} is not the export.json of an ONNX export ({type(e).__name__}: {e}); "
            "export the model again with napari_sam.export_onnx or `napari-sam export onnx "
            "MODEL -o FOLDER --overwrite`"
        ) from None
    part = [str(k) for k, v in files.items() if str(v) == onnx_file.name]
    if listed != onnx_file.name and part:
        raise ValueError(
            f"{onnx_file} is this export's {part[0]}, not its decoder; pass the folder "
            f"{onnx_file.parent} or its {listed or 'decoder.onnx'}"
        )
    if listed != onnx_file.name:
        raise ValueError(
            f"{onnx_file} is not listed as the decoder in {meta_file} (files: "
            f"{json.dumps(files)}): it may be another model's or another tool's decoder. "
            "Export the decoder again into this folder (`napari-sam export onnx MODEL -o "
            f"{onnx_file.parent} --overwrite`, without --encoder-only)"
        )
    return meta


class OnnxDecoder:
    """An exported decoder (Meta's interface) run in onnxruntime.

    Parameters
    ----------
    path : str or PathLike
        The export folder (with ``decoder.onnx`` and ``export.json``) or the ``.onnx`` file
        (its ``export.json`` beside it). The export must have Meta's default outputs (no
        ``return_single_mask``, ``use_stability_score`` or ``return_extra_metrics``).
    threads : int, optional
        onnxruntime intra-op threads (default: onnxruntime's choice, one per core).

    Attributes
    ----------
    model_id : str
        The model the decoder was exported from; embeddings of other models are refused.
    img_size, low_res_size : int
        Model input side S and low-resolution mask side 4E.

    Raises
    ------
    FileNotFoundError
        No ``decoder.onnx`` or ``export.json`` there.
    ValueError
        ``export.json`` is not an export's or does not list the file as its decoder (another
        model's or another tool's file is never paired with it), the file is not a readable
        ONNX model, it was exported with non-default outputs, or it lacks the SAM decoder
        interface.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(f"running an ONNX decoder needs onnxruntime; {_INSTALL_HINT}") from e
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        onnx_file = path / DECODER_FILE if path.is_dir() else path
        meta_file = folder / METADATA_FILE
        if not onnx_file.is_file() or not meta_file.is_file():
            raise FileNotFoundError(
                f"no exported decoder at {path} (need {onnx_file.name} and {METADATA_FILE}); "
                "export one with napari_sam.export_onnx(model, folder) or "
                "`napari-sam export onnx MODEL -o FOLDER`"
            )
        meta = _read_metadata(meta_file, onnx_file)
        opts = meta.get("decoder_options") or {}
        if any(opts.get(k) for k in ("return_single_mask", "use_stability_score",
                                     "return_extra_metrics")):  # fmt: skip
            raise ValueError(
                f"{onnx_file} was exported with {', '.join(k for k, v in opts.items() if v)}; "
                "OnnxDecoder needs Meta's default outputs: export again without those options"
            )
        self.model_id = str(meta["model_id"])
        self.img_size = int(meta["input_size"])
        self.low_res_size = int(meta["low_res_size"])
        self.mask_threshold = float(meta.get("mask_threshold", 0.0))
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(onnx_file), so,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's InvalidProtobuf, Fail, ...: not a usable model
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(
                f"{onnx_file} is not a readable ONNX model ({first[:200]}); export it again "
                "with napari_sam.export_onnx or `napari-sam export onnx MODEL -o FOLDER "
                "--overwrite`"
            ) from None
        names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if names != list(DECODER_INPUTS) or outputs != list(DECODER_OUTPUTS):
            raise ValueError(
                f"{onnx_file} does not have the SAM decoder interface (inputs {names}, "
                f"outputs {outputs}); export it with napari_sam.export_onnx"
            )
        sides = self.session.get_inputs()[3].shape[2:]  # mask_input (1, 1, 4E, 4E)
        if any(isinstance(n, int) and n != self.low_res_size for n in sides):
            raise ValueError(
                f"{meta_file} gives low_res_size {self.low_res_size}, but {onnx_file} takes "
                f"masks of {tuple(sides)}: the two files are not one export; export the model "
                "again with napari_sam.export_onnx or `napari-sam export onnx MODEL -o FOLDER "
                "--overwrite`")
        self._no_mask = np.zeros((1, 1, self.low_res_size, self.low_res_size), np.float32)

    @classmethod
    def for_model(cls, model, *, threads: int | None = None) -> OnnxDecoder:
        """The decoder of ``model`` (a Sam), exported once into :func:`onnx_cache_folder`
        (a few seconds) and reused by later calls for the same weights. ValueError for a SAM
        2.1 model (:func:`~napari_sam.export.onnx_export.check_exportable`), as the export
        says."""
        check_exportable(model)  # (a SAM 2.1 model has no SAM 1 decoder to key the cache by)
        folder = onnx_cache_folder(model)
        if not (folder / DECODER_FILE).is_file():
            try:
                export_onnx(model, folder, encoder=False, overwrite=True)
            except (PermissionError, FileExistsError) as e:  # the cache, not an -o folder
                raise PermissionError(
                    f"cannot write the ONNX decoder into the model cache ({folder}): "
                    f"{str(e).split(';')[0]}; set NAPARI_SAM_CACHE_DIR to a folder you can "
                    "write to") from None
        return cls(folder, threads=threads)

    def predict(
        self, embedding, points=None, labels=None, box=None, mask_input=None, multimask=True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one object: :meth:`napari_sam.Predictor.predict` with this decoder and
        ``boundary="threshold"``.

        The prompts are checked, and a box partly outside the image clipped to it, by the
        checks :meth:`napari_sam.Predictor.predict` uses (:func:`napari_sam.prompts.check_points`,
        :func:`~napari_sam.prompts.check_box`, :func:`~napari_sam.prompts.check_mask_input`),
        so a bad prompt raises the same error. Masks are cut at the model's mask threshold
        (Meta's interface): the masks of ``Predictor.predict(..., boundary="threshold")``,
        not of its default ``boundary="auto"``, which for the bundled demo model cuts them on
        the image's edges.

        Parameters
        ----------
        embedding : ImageEmbedding
            Of the model this decoder was exported from (``embedding.model_id``).
        points, labels, box, mask_input, multimask
            As for :meth:`napari_sam.Predictor.predict`: (P, 2) napari (row, col) points,
            (P,) labels (1 positive, 0 negative; default all positive), a (row0, col0, row1,
            col1) box, (4E, 4E) or (1, 4E, 4E) low-resolution logits, three candidate masks
            or one.

        Returns
        -------
        masks, scores, logits : numpy.ndarray
            (C, H, W) bool, (C,) float32 and (C, 4E, 4E) float32; C is 3 when ``multimask``
            else 1.

        Raises
        ------
        ValueError, TypeError
            A tiled embedding (an image larger than 1.5 model inputs: embed it with
            ``tiling=None``), an embedding of another model, labels without points, no
            prompt, or a prompt
            :meth:`napari_sam.Predictor.predict` refuses (a point outside the image or not
            finite, a label other than 0 or 1, as many labels as points not given, an
            inverted box or one outside the image, a mask_input of the wrong shape or not
            finite), with the same message.
        """
        if getattr(embedding, "tiling", None) is not None:
            raise ValueError(
                "OnnxDecoder decodes an untiled image embedding, and this image is embedded in "
                "tiles (it is larger than 1.5 model inputs, docs/tiling.md): embed it whole "
                "with set_image(image, tiling=None) (shrunk to the model input), or use "
                "Predictor.predict, which decodes the tiles")
        if embedding.model_id != self.model_id:
            raise ValueError(
                f"the embedding was made by model {embedding.model_id!r} but this decoder was "
                f"exported from {self.model_id!r}; embed the image with the same model"
            )
        if points is None and labels is not None:
            raise ValueError("labels were given without points")
        if points is None and box is None and mask_input is None:
            raise ValueError("give at least one prompt: points, a box or a mask_input")
        size = tuple(int(n) for n in embedding.original_size)
        if points is not None:
            points, labels = check_points(points, labels, size)
        if box is not None:
            box = check_box(box, size)  # partly outside: clipped, as Predictor.predict does
        if mask_input is not None:
            mask_input = check_mask_input(mask_input, self.low_res_size)
        warn_only_negative(labels, box, mask_input)
        feed = self._feed(embedding, points, labels, box, mask_input)
        masks, scores, logits = self.session.run(None, feed)
        sl = slice(1, None) if multimask else slice(0, 1)
        return masks[0, sl] > self.mask_threshold, scores[0, sl], logits[0, sl]

    def _feed(self, embedding, points, labels, box, mask_input) -> dict[str, np.ndarray]:
        """The decoder's inputs (Meta's interface) for checked prompts of one object.

        Parameters
        ----------
        embedding : ImageEmbedding
        points, labels : numpy.ndarray (P, 2) and (P,), or None
            (row, col) pixels and 1 / 0, as :func:`napari_sam.prompts.check_points` returns.
        box : numpy.ndarray (4,) or None
            (row0, col0, row1, col1) inside the image (:func:`napari_sam.prompts.check_box`).
        mask_input : numpy.ndarray (4E, 4E) float32 or None
            From :func:`napari_sam.prompts.check_mask_input`.

        Returns
        -------
        dict
            ``DECODER_INPUTS`` name -> float32 array: points and box corners in SAM's
            (x, y) model-input frame, Meta's padding point after points without a box (a
            mask prompt alone: no point at all, as the PyTorch decoder has no sparse token).
        """
        spec = embedding.spec(self.img_size)
        coords, labs = [], []
        if points is not None:
            coords.append(points_to_model(points, spec))
            labs.append(np.asarray(labels, np.float32))
        if box is not None:  # two corners labelled 2 and 3, no padding point
            coords.append(boxes_to_model(box.reshape(1, 4), spec).reshape(2, 2))
            labs.append(np.array([2, 3], np.float32))
        elif points is not None:  # Meta's padding point (a mask alone has no sparse token,
            coords.append(np.zeros((1, 2), np.float32))  # as in PyTorch: N = 0 then)
            labs.append(np.array([-1], np.float32))
        else:
            coords.append(np.zeros((0, 2), np.float32))
            labs.append(np.zeros(0, np.float32))
        if mask_input is None:
            mask, has_mask = self._no_mask, np.zeros(1, np.float32)
        else:
            n = self.low_res_size
            mask, has_mask = mask_input.reshape(1, 1, n, n), np.ones(1, np.float32)
        feats = embedding.features
        feats = feats.detach().cpu().float().numpy() if hasattr(feats, "detach") else feats
        return {
            "image_embeddings": np.asarray(feats, np.float32)[None],
            "point_coords": np.concatenate(coords)[None].astype(np.float32),
            "point_labels": np.concatenate(labs)[None],
            "mask_input": mask,
            "has_mask_input": has_mask,
            "orig_im_size": np.asarray(embedding.original_size, np.float32),
        }
