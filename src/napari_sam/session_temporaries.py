"""The hidden temporaries a session write makes, named by their writer, and the removal of
those whose writer is provably dead, in the whole folder.

:func:`napari_sam.session.write_session` writes each label TIFF and the JSON under a hidden
name beside it and renames it into place. A napari killed meanwhile (``kill -9``, the OOM
killer, a power cut) leaves that file: a whole copy of the labels for a TIFF.
:func:`napari_sam.session_leftovers.sweep_once` removes it only when the same session file is
written again, so a *Save session...* to a path never saved to again left it for good.

The temporary's name now says who writes it, in the 12 hex digits the name always had
(``.<name>.<PPPPPP><WWWWWW>.tmp``, :func:`session_tmp_name`: so every name made from a
session file keeps its length): ``PPPPPP`` the writer's process id, ``WWWWWW`` the first 6
hex digits of the SHA-1 of its host and PID namespace
(:func:`napari_sam.io.dead_temporaries.host_tag`, :func:`~napari_sam.io.dead_temporaries
.pid_namespace`). :func:`remove_dead_session_temporaries` removes, in a folder, the session
temporaries (of any session file there: ``*.json`` and their ``*.labels-<12 hex>.tif`` /
``*.base-<12 hex>.tif``) whose writer is dead by the rule of
:mod:`napari_sam.io.dead_temporaries`: one of this host and namespace once its process runs
no more (on Windows, where that cannot be asked, by its age as below); any other (another
host, another container, a name of before) once unwritten for
:data:`~napari_sam.io.dead_temporaries.FOREIGN_TEMPORARY_AGE` (24 hours), and only when the
file it was to become is a session file (an autosave's ``*.sam-session.json`` name, or a
``*.json`` beside it that is a session file; for a label TIFF, that of the session file
naming it): a user's own ``.settings.json.0123456789ab.tmp`` is not one; never one whose
``flock`` a writer holds. The dock's ``read_session`` calls (load, the offer to resume:
``sweep_temporaries=True``; not a plain read) call it, and ``write_session`` through
:func:`sweep_folder_now_and_then` (the first write in a folder, then at most every
:data:`SWEEP_INTERVAL_S`: an autosave writes at every commit, and listing a folder of 20,000
files took 20-40 ms each time): the next session loaded, or offered for resuming, in that
folder, or the next napari saving there, removes what a killed write left.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from pathlib import Path

from napari_sam.io.dead_temporaries import (
    FOREIGN_TEMPORARY_AGE,
    host_tag,
    pid_namespace,
    remove_unless_held,
    writer_ended,
)
from napari_sam.session_leftovers import session_text

__all__ = ["SWEEP_INTERVAL_S", "remove_dead_session_temporaries", "session_tmp_name",
           "sweep_folder_now_and_then", "writer_tag"]

#: how often (s) a process's session writes look for dead temporaries in a folder again
SWEEP_INTERVAL_S = 600.0

_SWEPT_AT: dict[str, float] = {}  # folder: when this process last swept it (time.monotonic)

_TEMPORARY = re.compile(r"\.(?:(?P<json>.+\.json)|(?P<stem>.+)\.(?:labels|base)-[0-9a-f]{12}\.tif)"
                        r"\.(?P<pid>[0-9a-f]{6})(?P<who>[0-9a-f]{6})\.tmp")
#: the name ending of a dock's autosave (``napari_sam.session.SESSION_FILE_SUFFIX``)
_AUTOSAVE_SUFFIX = ".sam-session.json"


@functools.lru_cache(maxsize=1)
def _writer_id() -> str:
    """6 hex digits of this host and PID namespace."""
    return hashlib.sha1(f"{host_tag()}-{pid_namespace()}".encode()).hexdigest()[:6]


def writer_tag() -> str:
    """12 hex digits naming this process as a writer: its id (6 hex digits; the largest
    Linux process id, 4194303, has 6) and :func:`_writer_id`."""
    return f"{os.getpid() % 16**6:06x}{_writer_id()}"


def session_tmp_name(path: Path) -> Path:
    """The hidden name this process writes the session file or label TIFF ``path`` under
    before renaming it into place: ``.<name>.<writer_tag>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{writer_tag()}.tmp")


def remove_dead_session_temporaries(folder: os.PathLike | str) -> list[Path]:
    """Remove the session temporaries in ``folder`` whose writer is dead (the module
    docstring); returns them. Best effort: never raises ``OSError`` (a folder that cannot
    be listed, a file that cannot be removed: left)."""
    folder, gone = Path(folder), []
    ours, now = _writer_id(), time.time()
    try:
        with os.scandir(folder) as it:
            found = [(e.name, m) for e in it if e.name.startswith(".")
                     and (m := _TEMPORARY.fullmatch(e.name))]
    except OSError:
        return gone
    for name, m in found:
        tmp = folder / name
        try:
            if not tmp.is_file():
                continue
            if m["who"] == ours:  # (Windows: by its age too, see writer_ended)
                dead = writer_ended(int(m["pid"], 16), tmp, now)
            else:  # another host or container, or a random name of before: by its age,
                # and only a session file's (a user's .settings.json.0123456789ab.tmp stays)
                dead = (now - tmp.stat().st_mtime >= FOREIGN_TEMPORARY_AGE
                        and _of_a_session_file(folder, m["json"] or f"{m['stem']}.json"))
            if dead and remove_unless_held(tmp):
                gone.append(tmp)
        except OSError:
            continue
    return gone


def sweep_folder_now_and_then(folder: os.PathLike | str) -> list[Path]:
    """:func:`remove_dead_session_temporaries` in ``folder`` at the first call for it in this
    process, then once :data:`SWEEP_INTERVAL_S` seconds have passed; returns what it removed."""
    key, now = os.path.abspath(folder), time.monotonic()
    last = _SWEPT_AT.get(key)
    if last is not None and now - last < SWEEP_INTERVAL_S:
        return []
    _SWEPT_AT[key] = now
    return remove_dead_session_temporaries(folder)


def _of_a_session_file(folder: Path, json_name: str) -> bool:
    """Whether ``json_name`` in ``folder`` (the final name of a temporary, or the JSON of a
    label TIFF's) is a session file: a dock's autosave name, or a file there that is one."""
    if json_name.endswith(_AUTOSAVE_SUFFIX):
        return True
    try:
        return session_text(folder / json_name)[0]
    except OSError:  # (none there: a user's file named like a temporary)
        return False
