"""Which label files of a folder to train each image on (``napari-sam train d/ d/``).

Annotating ``d/img.tif`` in the GUI leaves several label files of that one image beside it:
the autosaved session's label TIFF (``img.tif.sam-session.labels-<hash>.tif``), those of a
session saved under another name (*Save session...*: ``my_session.labels-<hash>.tif``), of
earlier sessions kept aside, and the labels saved by hand (``img_labels.tif``). A session's
label TIFF belongs to the image its session file names (:func:`session_image`), whatever its
own name; :func:`choose_label_files` keeps one label file per image: the one named after it
(``img_labels.tif``, ``ground_truth/img.tif``) over the sessions', else the newest of the
sessions' and of the unedited label images ``auto`` or ``segment`` wrote for it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_sam.training.data import named_after
from napari_sam.training.movies import movie_session_entry

__all__ = ["LabelChoice", "choose_label_files", "session_image"]

#: ``<session>.labels-<hash>.tif`` / ``<session>.base-<hash>.tif``: a session's label TIFFs.
_SESSION_TIFF = re.compile(r"(?P<session>.+)\.(?P<what>labels|base)-[0-9a-f]{12}\.tif")


@dataclass
class LabelChoice:
    """The label files :func:`choose_label_files` kept.

    Attributes
    ----------
    labels : list of Path
        The label files to train on, in the order given, without those left out.
    images : dict of Path to Path
        For each kept session label TIFF, the image its session file names (pair it with
        that image, whatever its name).
    notes : list of str
        What was left out and why, one line each.
    chosen : list of str
        Choices between session label TIFFs that differ, to say even with ``-q`` (training
        on other labels than the user meant trains wrong).
    """

    labels: list[Path]
    images: dict[Path, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)


def _session_record(label: Path) -> tuple[dict, dict] | None:
    """(session file contents, its ``labels`` or ``base`` entry) of the session whose label
    TIFF ``label`` is (:func:`napari_sam.batch.inputs.is_session_labels`), or None."""
    from napari_sam.batch.inputs import is_session_labels

    m = _SESSION_TIFF.fullmatch(label.name)
    if m is None or not is_session_labels(label):
        return None
    try:
        record = json.loads(label.with_name(m["session"] + ".json").read_text("utf-8-sig"))
    except (OSError, ValueError):
        return None
    return record, record.get(m["what"]) or {}


def _one_per_movie_session(labels: Sequence[Path]) -> list[Path]:
    """``labels`` with one TIFF for each movie session's time point TIFFs (the first given):
    they are the labels of one movie, read together (:func:`movie_session_entry`)."""
    seen: set[Path] = set()
    out = []
    for p in labels:
        found = movie_session_entry(p)
        if found is not None and found[0] in seen:
            continue
        if found is not None:
            seen.add(found[0])
        out.append(p)
    return out


def session_image(label: os.PathLike | str, images: Sequence[os.PathLike | str]
                  ) -> Path | None:
    """The image among ``images`` whose annotation session wrote the label TIFF ``label``.

    Parameters
    ----------
    label : path
        A session's label TIFF (``<name>.labels-<hash>.tif`` or ``<name>.base-<hash>.tif``
        beside the session file ``<name>.json`` that names it).
    images : sequence of paths
        The images to look among.

    Returns
    -------
    Path or None
        The image the session file names (``image.path``), or, when that path is not among
        ``images`` (the folder was moved or copied), the image of that file name beside the
        session file; None when ``label`` is no session's label TIFF or its image is not
        among ``images``.
    """
    found = _session_record(Path(label))
    recorded = ((found[0].get("image") or {}).get("path") if found else None)
    if not isinstance(recorded, str) or not recorded:
        return None
    images = [Path(p) for p in images]
    real = {os.path.realpath(p): p for p in images}
    if os.path.realpath(recorded) in real:
        return real[os.path.realpath(recorded)]
    here = os.path.realpath(Path(label).parent / Path(recorded).name)
    return real.get(here)


def _written(label: Path) -> float:
    """When ``label`` was written: a session label TIFF's session file's time (the TIFF,
    named by its content, is not written again when a later save holds the same labels),
    another file's own time."""
    m = _SESSION_TIFF.fullmatch(label.name)
    json_path = label.with_name(m["session"] + ".json") if m else label
    return (json_path if json_path.is_file() else label).stat().st_mtime


def _content(label: Path) -> str | None:
    """The content hash the session file records for ``label``."""
    found = _session_record(label)
    parts = found[1].get("time_points") if found and "path" not in found[1] else None
    digest = (" ".join(str(p.get("hash")) for p in parts if isinstance(p, dict))
              if isinstance(parts, list) else found[1].get("hash") if found else None)
    return digest if isinstance(digest, str) and digest else None


def _ours(label: Path) -> bool:
    """Whether ``label`` is a label image napari-sam wrote (``auto``, ``segment``: it has a
    napari-sam sidecar) and that was not edited since."""
    from napari_sam import io as nio

    return nio.read_output_metadata(label) is not None and not nio.output_edited(label)


def choose_label_files(images: Sequence[Path], labels: Sequence[Path]) -> LabelChoice:
    """One label file per image where an image has several beside it.

    A session's label TIFF belongs to the image its session file names
    (:func:`session_image`). Labels saved by hand win: the session label TIFFs of an image
    are left out when a label file named after it
    (:func:`napari_sam.training.data.named_after`: ``img_labels.tif``,
    ``ground_truth/img.tif``) is among ``labels`` and is no label image napari-sam wrote
    (``auto``, ``segment``) unedited since. Otherwise, of an image's session label TIFFs
    (autosave, *Save session...*, sessions kept aside) and the unedited outputs of
    ``auto``/``segment`` named after it, the newest is kept (a session's by its session
    file's time). A movie's session names one labels TIFF per time point: they count as
    one label file (the first given stands for them all; the training reader reads every
    time point's, :func:`movie_session_entry`).

    Parameters
    ----------
    images, labels : sequence of Path
        The images and the label files found for them.

    Returns
    -------
    LabelChoice
    """
    names = [str(p) for p in images]
    labels = _one_per_movie_session(labels)
    owned = {p: im for p in labels if (im := session_image(p, images)) is not None}
    choice = LabelChoice(labels=list(labels))
    for image in images:
        mine = [p for p in labels if owned.get(p) == image]
        if not mine:
            continue
        stem = named_after(str(image), names)
        explicit = [p for p in labels if p not in owned and named_after(str(p), names) == stem]
        ours = [p for p in explicit if _ours(p)]
        if len(explicit) - len(ours) >= sum(named_after(str(im), names) == stem
                                            for im in images):
            _say_hand_saved(choice, image, mine, explicit[0])
            choice.labels = [p for p in choice.labels if p not in mine]
            continue
        kept = max(mine + ours, key=_written)
        left = [p for p in mine + ours if p != kept]
        if kept in owned:
            choice.images[kept] = image
        if left:
            same = not ours and len({_content(p) for p in mine} - {None}) == 1 and None not in {
                _content(p) for p in mine}
            line = (f"LABELS: {image} has {len(mine + ours)} label files; trained on {kept} "
                    f"(the newest), left out {', '.join(map(str, left))}")
            if same:
                choice.notes.append(line + " (the same labels)")
            else:
                choice.chosen.append(line + ", which may hold other labels: give the label "
                                     "file by name (LABELS) to train on another")
        choice.labels = [p for p in choice.labels if p not in left]
    return choice


def _say_hand_saved(choice: LabelChoice, image: Path, sessions: list, hand: Path) -> None:
    """Say that the session label TIFFs ``sessions`` of ``image`` are left out for the label
    file ``hand`` saved by hand: a note, or a line said even with ``-q`` when a session was
    saved after ``hand`` (annotated on after saving the labels: they may hold more)."""
    import time

    def when(p: Path) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(_written(p)))

    newer = [p for p in sessions if _written(p) > _written(hand)]
    if newer:
        newest = max(newer, key=_written)
        choice.chosen.append(
            f"LABELS: trained on {hand} (named after {image}, saved {when(hand)}), not on "
            f"the newer labels of its annotation session {newest} (saved {when(newest)}), "
            "which may hold more: give that file by name (LABELS) to train on it")
        return
    choice.notes.append(
        f"LABELS: left out {', '.join(map(str, sessions))} (the labels of an annotation "
        f"session of {image}): {hand} is named after it and is trained on; "
        "give the label files by name to train on another")
