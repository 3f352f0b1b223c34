"""Reading images and writing label volumes, with axes and pixel-size metadata.

This package is part of the core: it never imports napari or Qt. Its modules: ``axes``
(axes strings), ``layout`` (``ImageData``, the standard layout), ``readers`` (reading files),
``ome_zarr`` (zarr groups: OME-Zarr, bioformats2raw),
``slice_source`` (reading a stack slice by slice with bounded memory), ``chunk_cache``
(decoded chunks of a tiled or compressed input kept in a bounded LRU),
``lock_errors`` (what ``flock``'s errors say),
``writers`` (atomic writers, the streaming TIFF writer) and ``output_metadata`` (the JSON
file beside each output, resume checks, object summaries).

Reading
-------
``read_image(path, axes=None, lazy=False) -> ImageData`` reads TIFF, OME-TIFF, ImageJ
hyperstacks, BigTIFF, multi-page TIFF, zarr (an array, a group holding a single array,
OME-Zarr multiscale level 0, or a bioformats2raw store's first series) and ``.npy``.
``ImageData.axes`` is a string of the letters
``T Z C Y X`` in the order of the data's dimensions, e.g. ``"ZYX"``, ``"TZYX"``, ``"YXC"``.

Axes come from the file's metadata (OME, ImageJ, tifffile's shaped JSON, OME-Zarr ``axes``,
zarr ``dimension_names``) and are mapped from tifffile's letters: ``S`` (samples) -> ``C``;
``Q`` / ``I`` (unknown / image sequence) and other letters -> ``Z`` (or ``T`` when ``Z`` is
taken). Files without metadata get a guess from the shape (``guess_axes``). The ``axes``
argument overrides all of that; it must name every dimension of the data as read.

Memory behaviour of ``lazy=True``:

* uncompressed, contiguous TIFF series and ``.npy`` files come back as a read-only
  ``numpy.memmap``: nothing is read until it is indexed, and the operating system pages in
  (and may drop again) only what is touched, so a slice costs about one slice of memory;
* compressed or tiled TIFF series come back as a read-only ``zarr.Array`` over tifffile's
  zarr store: every index decodes only the TIFF pages / strips it covers. The store keeps an
  open handle on the file;
* zarr inputs are returned as the ``zarr.Array`` itself (chunks are read on indexing).

``lazy=False`` (the default) loads the whole array into memory as a ``numpy.ndarray``.

Standard layout
---------------
The models work on ``(Y, X[, C])`` images and ``(S, Y, X[, C])`` stacks where the stack axis
``S`` is ``Z`` if there is one, else ``T``. ``to_standard`` reorders (a view for numpy /
memmap, a lazy wrapper for zarr), selects a channel or time point and squeezes size-1 axes.

Writing
-------
``write_labels`` writes ``.tif``/``.tiff`` (compressed, ImageJ hyperstack for uint16 labels,
OME-TIFF for uint32 labels because the ImageJ format has no uint32), ``.ome.tif`` (always
OME), ``.npy`` and ``.zarr``. Every write goes to a temporary name in the destination
directory and is renamed into place (``os.replace``), so readers never see a partial file and
a failed write leaves an existing file untouched.

Output metadata
---------------
Each output ``out.tif`` gets a JSON output metadata file ``out.tif.json`` (the output's full
name plus ``.json``, so ``out.tif`` and ``out.npy`` never share one) recording the model,
version, parameters, objects, the output's size and the input's size, mtime and a hash of
sampled bytes (``content_sample_hash``).
``is_complete`` uses it to decide whether a batch rerun can skip an output (``incomplete_reason``
says why not), and
``output_edited`` whether an output was changed since (a rerun keeps it).
"""

from __future__ import annotations

from napari_sam.io.axes import AXES_LETTERS, SPATIAL, guess_axes, validate_axes
from napari_sam.io.layout import ImageData, to_standard
from napari_sam.io.output_metadata import (
    OUTPUT_METADATA_FORMAT,
    OUTPUT_METADATA_VERSION,
    content_sample_hash,
    incomplete_reason,
    input_fingerprint,
    is_complete,
    label_objects_summary,
    output_edited,
    output_metadata_path,
    read_output_metadata,
    write_output_metadata,
)
from napari_sam.io.readers import (
    TIFF_SUFFIXES,
    FileHeader,
    ImageReadError,
    axes_inferred,
    check_image_data,
    file_axes,
    file_header,
    file_stack_axis,
    is_zarr_path,
    quiet_tifffile,
    read_image,
)
from napari_sam.io.slice_source import SliceSource
from napari_sam.io.writers import (
    BIGTIFF_LIMIT,
    KERNEL_FILE_SYSTEMS,
    file_system_type,
    fsync_path,
    json_default,
    remove_path,
    save_picture,
    tmp_name,
    unwritable_reason,
    write_atomic,
    write_json_atomic,
    write_kind,
    write_labels,
    write_labels_stream,
    write_npz_atomic,
    write_text_atomic,
)

#: The names this package had before "sidecar" became "output metadata" (kept so that
#: existing scripts and modules keep working).
SIDECAR_FORMAT = OUTPUT_METADATA_FORMAT
SIDECAR_VERSION = OUTPUT_METADATA_VERSION
sidecar_path = output_metadata_path
read_sidecar = read_output_metadata
write_sidecar = write_output_metadata

__all__ = [
    "AXES_LETTERS",
    "axes_inferred",
    "save_picture",
    "ImageData",
    "content_sample_hash",
    "ImageReadError",
    "check_image_data",
    "file_axes",
    "file_header",
    "FileHeader",
    "file_stack_axis",
    "guess_axes",
    "input_fingerprint",
    "is_complete",
    "incomplete_reason",
    "quiet_tifffile",
    "label_objects_summary",
    "output_edited",
    "read_image",
    "read_sidecar",
    "sidecar_path",
    "to_standard",
    "validate_axes",
    "write_json_atomic",
    "write_labels",
    "write_sidecar",
    "output_metadata_path",
    "read_output_metadata",
    "write_output_metadata",
    "write_labels_stream",
    "tmp_name",
    "write_npz_atomic",
    "write_text_atomic",
    "write_atomic",
    "SliceSource",
    "OUTPUT_METADATA_FORMAT",
    "OUTPUT_METADATA_VERSION",
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "SPATIAL",
    "TIFF_SUFFIXES",
    "BIGTIFF_LIMIT",
    "fsync_path",
    "is_zarr_path",
    "json_default",
    "remove_path",
    "write_kind",
    "file_system_type",
    "KERNEL_FILE_SYSTEMS",
    "unwritable_reason",
]
