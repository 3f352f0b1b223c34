"""Files a glob matched that are no images: napari-sam's own companions (annotation session
files, output sidecars, training metadata, anything in its work folder) and other files (a
``README.txt``, a ``notes.csv``). ``segment "g1/*"`` counted each as a failed input (exit 1)
although every image succeeded; they are left out with a note instead. A file named
explicitly is always an input (a file that is not an image is an error there)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.inputs import IMAGE_SUFFIXES, WORK_DIR

#: An autosaved annotation session's label TIFF (``img.tif.sam-session.labels-<hash>.tif``,
#: ``.base-<hash>.tif``): left out by its name even where its session file no longer names it
#: (``batch.inputs.is_session_labels`` checks the session file).
SESSION_LABELS_NAME = re.compile(r".+\.sam-session\.(labels|base)-[0-9a-f]{12}\.tiff?",
                                 re.IGNORECASE)

#: The first bytes of a TIFF (classic and BigTIFF, either byte order): a TIFF of another
#: suffix (``.tf8``, none) is an image all the same.
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def _json_says_ours(path: Path) -> str | None:
    """What napari-sam file the JSON ``path`` is (session, sidecar, training metadata)."""
    from napari_sam.session import is_session_file
    from napari_sam.training.checkpoint import is_training_metadata

    if is_session_file(path):
        return "an annotation session"
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("format") == nio.OUTPUT_METADATA_FORMAT:
        return "the sidecar of an output"
    if is_training_metadata(path):
        return "a model's training metadata"
    return None


def own_file_kind(path: os.PathLike | str) -> str | None:
    """What napari-sam file ``path`` is (``"an annotation session"``, ...), or None."""
    path = Path(path)
    if WORK_DIR in path.parts:
        return "in its work folder"
    if SESSION_LABELS_NAME.fullmatch(path.name):  # one no session file names any more too
        return "an annotation session's labels"
    if path.suffix.lower() == ".json" and path.is_file():
        return _json_says_ours(path)
    return None


def is_image_file(path: os.PathLike | str) -> bool:
    """Whether ``path`` may be an image: a zarr store, an image suffix, or TIFF bytes."""
    path = Path(path)
    if path.is_dir() or path.name.lower().endswith(IMAGE_SUFFIXES + nio.TIFF_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) in TIFF_MAGIC
    except OSError:  # unreadable: the reader says why
        return True


def leave_out_companions(found, specs) -> tuple[list, list[Path], list[Path]]:
    """Split the inputs ``found`` (:func:`~napari_sam.batch.collect_inputs_with_folders`'s
    (path, subfolder) list) into those kept, napari-sam's own files and other files that are
    no images (:func:`own_file_kind`, :func:`is_image_file`), found in a folder or by a glob.
    Files named in ``specs`` (the command's INPUT arguments) are always kept. The kept list
    keeps ``found``'s type and ``duplicates``."""
    named = set()
    for spec in specs:
        p = Path(os.path.expanduser(os.fspath(spec)))
        if p.is_file():
            named.add(os.path.realpath(p))
    kept, own, other = type(found)(), [], []
    for path, sub in found:
        if os.path.realpath(path) in named:
            kept.append((path, sub))
        elif own_file_kind(path) is not None:
            own.append(path)
        elif not is_image_file(path):
            other.append(path)
        else:
            kept.append((path, sub))
    if hasattr(found, "duplicates"):
        kept.duplicates = found.duplicates
    return kept, own, other


def companions_note(own: list[Path], other: list[Path]) -> list[str]:
    """The notes saying which files :func:`leave_out_companions` left out (a few named)."""

    def some(paths):
        names = ", ".join(str(p) for p in paths[:3])
        return names + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")

    notes = []
    if own:
        n = len(own)
        notes.append(f"note: left out {n} of napari-sam's own {'file' if n == 1 else 'files'} "
                     f"matched as inputs ({some(own)}: sessions, sidecars, its work folder); "
                     "they are no images")
    if other:
        n = len(other)
        notes.append(f"note: left out {n} {'file' if n == 1 else 'files'} that "
                     f"{'is' if n == 1 else 'are'} not an image ({some(other)}); napari-sam "
                     "reads TIFF, PNG, JPEG, .npy and .zarr (name a file itself to try it)")
    return notes
