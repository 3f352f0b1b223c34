"""Inputs and output names of a batch: expanding files, folders and globs into images, and
where each input's output goes.

``BatchError`` is a problem with the batch as a whole (inputs, outputs, prompts file): nothing
was run.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.glob_brackets import bracket_words
from napari_sam.batch.glob_case import case_only_matches, case_words, left_out_notes

#: Commands that produce one output per input file.
COMMANDS = ("auto", "segment", "embed")
#: File suffixes picked up when a directory is given as input.
IMAGE_SUFFIXES = (".tif", ".tiff", ".btf", ".npy", ".zarr", ".png", ".jpg", ".jpeg")
#: Hidden folder inside the output folder for resumable per-slice work and locks.
WORK_DIR = ".napari-sam-work"


class BatchError(ValueError):
    """A problem with the batch as a whole (inputs, outputs, prompts file): nothing was run."""


def _is_image(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith("."):
        return False
    if path.is_dir():
        return name.endswith(".zarr") or nio.is_zarr_path(path)
    return name.endswith(IMAGE_SUFFIXES)


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    """The images directly in ``folder`` (``recursive``: in its subfolders too): files with an
    image suffix and zarr stores. A zarr store is one image and is never searched inside (its
    arrays, e.g. an OME-Zarr's resolution levels, and chunk files are not inputs), nor are
    hidden folders (``.snapshot``, ``.Trashes``, ``.git``: hidden files are no inputs either)
    and napari-sam's work folder. Symbolic links to folders are followed after the folders
    themselves, and each folder is searched once, by its real path (a link to a folder
    already searched, or back to one above it, adds nothing)."""
    found: list[Path] = []
    searched: set[str] = set()
    tops = [Path(folder)]  # the folder, then the linked folders found in it
    while tops:
        top = tops.pop(0)
        if os.path.realpath(top) in searched:
            continue
        for root, dirs, files in os.walk(top):
            here = Path(root)
            searched.add(os.path.realpath(here))
            below = []
            for name in sorted(dirs):
                if _is_image(here / name):
                    found.append(here / name)
                elif recursive and not name.startswith(".") and name != WORK_DIR:
                    if os.path.islink(here / name):
                        tops.append(here / name)
                    else:
                        below.append(name)
            dirs[:] = below
            found.extend(here / f for f in files if _is_image(here / f))
    return sorted(found)


def _outside_matched_stores(matches: list[Path]) -> list[Path]:
    """Glob matches without those inside a zarr store that the glob also matched (``**/*``
    over a folder of OME-Zarr stores matches each store and every array and chunk file in
    it); arrays inside a store the glob does not match themselves are kept
    (``plate.zarr/*/0``)."""
    stores = {m for m in matches if m.is_dir() and _is_image(m)}
    return [m for m in matches if not any(parent in stores for parent in m.parents)]


def _is_sample_ground_truth(path: Path) -> bool:
    """Whether ``path`` is a ground-truth label image written by ``napari-sam sample`` (in a
    folder named ``ground_truth``, and its ImageJ metadata says ``"ground_truth": true``):
    not an image to segment. Only files in such folders are opened (a folder of thousands of
    images on a network file system is not read header by header before any work)."""
    if path.parent.name != "ground_truth" or path.suffix.lower() not in (".tif", ".tiff") \
            or not path.is_file():
        return False
    import json

    import tifffile

    try:
        with nio.quiet_tifffile(), tifffile.TiffFile(path) as tif:
            info = (tif.imagej_metadata or {}).get("Info")
        user = json.loads(info).get("napari_sam") if info else None
    except Exception:  # noqa: BLE001 - unreadable here: the reader says why later
        return False
    return isinstance(user, dict) and user.get("ground_truth") is True


def _is_our_output(path: Path, *, labels: bool = False) -> bool:
    """Whether ``path`` is an output of napari-sam (it has a napari-sam sidecar); with
    ``labels``, only one that is not a label image (an embedding store): the label images
    of ``auto`` and ``segment`` are labels to train on."""
    if path.suffix.lower() == ".png" and _is_preview(path):
        return True
    meta = nio.read_output_metadata(path)
    if meta is None or meta.get("format") != nio.OUTPUT_METADATA_FORMAT:
        return False
    return not labels or path.suffix.lower() not in (".tif", ".tiff", ".btf")


def _is_preview(path: Path) -> bool:
    """Whether the PNG ``path`` is the ``--preview`` of an output beside it
    (``<stem>_labels.png`` of ``<stem>_labels.tif``, which has a napari-sam sidecar) or its
    ``napari-sam report`` plot (``<stem>_labels.tif.trace.png``)."""
    if path.name.endswith(".trace.png"):
        meta = nio.read_output_metadata(path.with_name(path.name[: -len(".trace.png")]))
        return meta is not None and meta.get("format") == nio.OUTPUT_METADATA_FORMAT
    for ext in (".tif", ".ome.tif", ".zarr", ".npy"):
        meta = nio.read_output_metadata(path.with_name(path.stem + ext))
        if meta is not None and meta.get("format") == nio.OUTPUT_METADATA_FORMAT:
            made_from = (meta.get("input") or {}).get("path") if isinstance(
                meta.get("input"), dict) else None
            return not (made_from and Path(made_from) == path.resolve())  # its input: a photo
    return False


#: ``<session>.labels-<hash>.tif`` / ``<session>.base-<hash>.tif``: a session's label TIFFs.
_SESSION_TIFF = re.compile(r"(?P<stem>.+)\.(?P<what>labels|base)-[0-9a-f]{12}\.tif")


def is_session_labels(path: Path) -> bool:
    """Whether ``path`` is a label TIFF of an annotation session (the GUI's autosave
    ``<image>.sam-session.labels-<hash>.tif`` or a saved session's
    ``<name>.labels-<hash>.tif``): named so, beside a session file ``<name>.json``
    (:func:`napari_sam.session.is_session_file`) whose ``labels`` or ``base`` entry names
    it (a movie's: one of its time points' TIFFs). Only names of that form are looked at
    further."""
    m = _SESSION_TIFF.fullmatch(path.name)
    if m is None:
        return False
    from napari_sam.session import is_session_file

    json_path = path.with_name(m["stem"] + ".json")
    if not is_session_file(json_path):
        return False
    import json

    try:
        ref = json.loads(json_path.read_text(encoding="utf-8-sig")).get(m["what"])
    except (OSError, ValueError, AttributeError):
        return False
    from napari_sam.session_leftovers import tiff_refs  # (a movie's: one per time point)

    return any(r["path"] == path.name for r in tiff_refs(ref))


def _skipped(path: Path, *, labels: bool, keep_ground_truth: bool) -> bool:
    """Whether a file found in a folder or by a glob is left out: a session's label TIFF
    when collecting images, a ``napari-sam sample`` ground truth unless kept."""
    if not (labels or keep_ground_truth) and _is_sample_ground_truth(path):
        return True
    return not labels and is_session_labels(path)


class InputList(list):
    """The inputs :func:`collect_inputs_with_folders` found: a list of (image, subfolder),
    and in ``duplicates`` the (path left out, path kept) of each file reached again under
    another path that would write the same output (a link of the same name, both named);
    ``case_notes`` say which patterns left out files that they match but for upper/lower
    case (``"data/*.tif"`` and ``IMG.TIF``: :mod:`napari_sam.batch.glob_case`)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.duplicates: list[tuple[Path, Path]] = []
        self.case_notes: list[str] = []  # patterns that left out files by upper/lower case


def collect_inputs(
    specs: Iterable[str | os.PathLike], *, recursive: bool = False,
    keep_ground_truth: bool = False, labels: bool = False,
) -> list[Path]:
    """Expand files, directories and glob patterns into a sorted, de-duplicated list of images
    (:func:`collect_inputs_with_folders` without the folders)."""
    return [path for path, _ in collect_inputs_with_folders(
        specs, recursive=recursive, keep_ground_truth=keep_ground_truth, labels=labels)]


def _fixed_part(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard (``a/b/**/*.tif`` -> ``a/b``).

    A one-character class stands for its character (``scans [[]1]`` -> ``scans [1]``, as the
    escape the bracket error suggests writes it), so it does not end the fixed part."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        literal = re.sub(r"\[([^!])\]", r"\1", part)  # [[] -> [, [*] -> *, [1] -> 1
        pieces = re.split(r"\[[^!]\]", part)
        if any(glob.has_magic(piece) for piece in pieces):
            break
        fixed.append(literal)
    return Path(*fixed) if fixed else Path(".")


def _subfolder(match: Path, base: Path) -> Path:
    """The folder of ``match`` relative to ``base`` (``Path(".")`` when directly in it)."""
    try:
        return match.parent.relative_to(base)
    except ValueError:
        return Path(".")


def collect_inputs_with_folders(
    specs: Iterable[str | os.PathLike], *, recursive: bool = False,
    keep_ground_truth: bool = False, labels: bool = False,
) -> InputList:
    """Expand files, directories and glob patterns into a sorted, de-duplicated list of images,
    each with the subfolder it was found in.

    A directory contributes its ``.tif``/``.tiff``/``.btf``/``.npy``/``.png``/``.jpg``/
    ``.jpeg`` files and ``.zarr`` stores (with ``recursive=True`` those of its subfolders
    too); a glob (``"data/*.tif"``, ``"data/**/*.tif"``) its matches; a zarr directory is one
    input. Files that are outputs of napari-sam (they have a napari-sam sidecar; a PNG beside
    an output, its ``--preview`` or ``report`` plot) are left out, so writing the outputs
    next to the inputs does not feed them back in; so are, in folders and globs, the ground-truth
    label images of ``napari-sam sample`` (``data/ground_truth/``: ``auto data/ -r``), unless
    ``keep_ground_truth``, and the label TIFFs of annotation sessions
    (:func:`is_session_labels`: the GUI autosaves them next to the image). A file named
    explicitly is never left out for being a session's labels or a ground truth.

    A file reached twice where its output would be the same (one name, one subfolder:
    ``data/`` and ``data/a.tif``, a folder and a link to it, ``a/img.tif`` and a link
    ``b/img.tif -> ../a/img.tif`` both named) is one input, the first path kept; the others
    are listed in the result's ``duplicates``, so that the caller can say so. A symbolic link
    of another name (``b_link.tif -> a.tif``), or found in another subfolder (``-r`` over
    ``a/img.tif`` and ``b/img.tif -> ../a/img.tif``), named or found, is an input of its
    own, segmented under its own name and subfolder as its prompts are picked: outputs
    never collide, and none is left out without a word.

    ``labels=True`` collects label images (the LABELS of ``napari-sam train``): the ground
    truth, the session label TIFFs and the label images ``auto``/``segment`` wrote are
    kept; only embedding stores written by napari-sam are left out.

    Returns
    -------
    InputList of (Path, Path)
        Each image and its folder relative to the directory given (``--recursive``) or to the
        fixed part of the glob (``"runs/**/*.tif"``: below ``runs``); ``Path(".")`` for files
        given by name and files directly in the folder. Outputs mirror these subfolders, so
        ``pos1/img.tif`` and ``pos2/img.tif`` do not write the same output. Its
        ``duplicates`` are the (path left out, path kept) of the same file reached twice.

    Raises
    ------
    BatchError
        Naming every path that does not exist, pattern that matches nothing and directory
        without images.
    """
    found: list[tuple[Path, Path]] = []
    problems, case_notes = [], []
    for spec in specs:
        text = os.path.expanduser(os.fspath(spec))
        p = Path(text)
        if glob.has_magic(text) and not p.exists():
            matches = _outside_matched_stores(
                [Path(m) for m in sorted(glob.glob(text, recursive=True))])
            matches = [m for m in matches if (m.is_file() or _is_image(m)) and not _skipped(
                m, labels=labels, keep_ground_truth=keep_ground_truth)]
            base = _fixed_part(text)
            others = [m for m in case_only_matches(text, matches) if not _skipped(
                m, labels=labels, keep_ground_truth=keep_ground_truth)]
            if not matches:
                words = case_words(text, others, base) or bracket_words(
                    text, lambda m: (m.is_file() or _is_image(m)) and not _skipped(
                        m, labels=labels, keep_ground_truth=keep_ground_truth))
                problems.append(f"{text!r} matches no files" + (f"; {words}" if words else ""))
            elif others:
                case_notes.append((text, others, base))
        elif p.is_dir() and not nio.is_zarr_path(p):
            matches = [m for m in _folder_images(p, recursive)
                       if not _skipped(m, labels=labels, keep_ground_truth=keep_ground_truth)]
            base = p
            if not matches:
                problems.append(
                    f"directory {text!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
                    + ("" if recursive else "; use --recursive to search subfolders")
                )
        elif p.exists():
            matches, base = [p], p.parent
        else:
            problems.append(f"{text!r}: no such file or directory")
            matches, base = [], p
        found.extend((m, _subfolder(m, base)) for m in matches)
    if problems:
        raise BatchError("; ".join(problems))
    out, kept = InputList(), {}
    out.case_notes = left_out_notes(case_notes, [m for m, _ in found])
    for m, sub in found:
        # one input per output: a link of another name, or in another subfolder, is its own
        key = (os.path.realpath(m), m.name, sub)
        if key in kept:
            if (os.path.abspath(m) != os.path.abspath(kept[key])
                    and (m, kept[key]) not in out.duplicates):
                out.duplicates.append((m, kept[key]))
            continue
        if _is_our_output(m, labels=labels):
            continue
        kept[key] = m
        out.append((m, sub))
    if not out:
        if labels:
            raise BatchError("no label images left (every match is an embedding written by "
                             "napari-sam embed); point LABELS at label images")
        raise BatchError("no input images left (every match is an output of napari-sam)")
    return out


def _a_file_name(path: os.PathLike | str) -> bool:
    """Whether ``path`` ends in a file's name (``img.tif``, ``a_labels.tif.png``), so that a
    folder named ``*.zarr`` above it is a folder, not the store of an array."""
    name = Path(path).name.lower()
    return name.endswith(tuple(s for s in IMAGE_SUFFIXES if s != ".zarr") + (".json",))


def stem_of(path: os.PathLike | str) -> str:
    """File name without its image suffix (``a.ome.tif`` -> ``a``, ``b.zarr`` -> ``b``); a
    path inside a zarr store is named after the store and the groups within, trailing ``0``
    (first series, full resolution) left out: ``b.zarr/0`` -> ``b``, ``b.zarr/1`` -> ``b_1``,
    ``plate.zarr/A/1/0`` -> ``plate_A_1``."""
    parts = Path(path).parts
    inside = [] if _a_file_name(path) else [
        i for i, p in enumerate(parts[:-1]) if p.lower().endswith(".zarr") and len(p) > 5]
    if inside:
        inner = list(parts[inside[-1] + 1:])
        while inner and inner[-1] == "0":
            inner.pop()
        return "_".join([parts[inside[-1]][:-5], *inner])
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".npy", ".zarr", ".png",
                   ".jpg", ".jpeg"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def output_folder_and_stem(input_path: os.PathLike | str,
                           subfolder: os.PathLike | str = ".") -> tuple[Path, str]:
    """The folder (below the output folder) and the stem of the output of ``input_path`` found
    in ``subfolder``: those two, except for an array inside a zarr store (a glob
    ``"e/*.zarr/0"``, or ``e/b2r.zarr/0`` named): its path from the store folds into the stem
    (``b2r``, ``b2r_1``) and the store's folders leave the subfolder, so that no output folder is
    named ``.zarr`` without being a store (a later ``-r`` over the outputs read it as one).
    The stem is :func:`stem_of`'s (``e/b2r.zarr/0`` -> ``b2r``, ``e/b2r.zarr/1`` -> ``b2r_1``)."""
    sub, stem = Path(subfolder), stem_of(input_path)  # the store's path folded in already
    parents = Path(input_path).parent.parts
    stores = [i for i, part in enumerate(parents) if part.lower().endswith(".zarr")]
    at = None if _a_file_name(input_path) or not stores else stores[-1]  # as stem_of
    if at is None:
        return sub, stem
    inside = len(parents) - at  # the store and its groups above the array
    keep = max(0, len(sub.parts) - inside)
    return Path(*sub.parts[:keep]), stem


def output_path(input_path: os.PathLike | str, out_dir: os.PathLike | str, command: str, *,
                suffix: str = "_labels", fmt: str = "tif",
                subfolder: os.PathLike | str = ".") -> Path:
    """Where ``command`` writes the output of ``input_path`` (found in ``subfolder``).

    ``auto`` / ``segment``: ``out_dir/<subfolder>/<stem><suffix>.<fmt>``; ``embed``:
    ``out_dir/<subfolder>/<stem>.zarr`` (an array inside a store:
    :func:`output_folder_and_stem`).
    """
    folder, stem = output_folder_and_stem(input_path, subfolder)
    if command == "embed":
        return Path(out_dir) / folder / f"{stem}.zarr"
    return Path(out_dir) / folder / f"{stem}{suffix}.{fmt.lstrip('.')}"
