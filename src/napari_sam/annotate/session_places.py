"""Where the annotation session's session files are: where it is autosaved, and which
session files of its image exist (a mixin of
:class:`~napari_sam.annotate.session_log.SessionLog`, moved out of ``session_log``, at its
800-line limit).

The session of an image opened from a file is autosaved next to it
(:func:`napari_sam.session.session_file_for`); when the image's folder is not writable,
under the cache folder instead (:func:`fallback_session_file`); an image without a file
(a script's array, another plugin's layer) under the cache folder, in a folder named by its
pixels (:mod:`napari_sam.annotate.memory_sessions`). Two images of one file
(napari opens a file with a channel axis as one layer per channel) each have their own
session file (:meth:`SessionPlaces.own_session_file`); a session file another live session
autosaves in has alternates (:mod:`napari_sam.annotate.session_claims`).
"""

from __future__ import annotations

import hashlib
import os
import re
import weakref
from pathlib import Path

from napari_sam import session as S

from .memory_sessions import memory_image_key, memory_session_file, memory_sessions_folder
from .session_claims import alternate_session_files

__all__ = ["KEPT_KEYS", "SessionPlaces", "fallback_session_file", "folder_writable"]

#: the images' pixel hashes a session keeps (those of the last images picked)
KEPT_KEYS = 8
_SAME = object()  # a data object kept by its id alone, while it is the last one hashed


def folder_writable(folder: Path) -> bool:
    """Whether files can be made in ``folder`` (it exists and may be written to)."""
    return os.access(folder, os.W_OK | os.X_OK)


def fallback_session_file(image_path) -> Path:
    """Where the session of the image file ``image_path`` is autosaved when its folder is
    not writable: ``<cache>/sessions/<digest of the image's absolute path>/<name>.sam-session
    .json``, under the folder models are cached in (``NAPARI_SAM_CACHE_DIR`` or the
    platform cache, :func:`napari_sam.models.download.cache_dir`). The path is normalised
    (``data/../data/img.tif`` and ``data//img.tif`` are ``data/img.tif``: one session)."""
    from napari_sam.models.download import cache_dir

    image = Path(os.path.normpath(Path(image_path).absolute()))
    digest = hashlib.sha1(str(image).encode()).hexdigest()[:16]
    return cache_dir() / "sessions" / digest / S.session_file_for(image).name


class SessionPlaces:
    """The session files of the session's image (needs the session's attributes:
    ``image_path``, ``image_name``, ``image_identity``, ``source``, ``channel_axis``,
    ``channel``, ``_image_records``, ``_claims``, ``_digests``, ``_hash``, ``wait_autosave``,
    ``hashed_stack``, ``movie_record``)."""

    def autosave_path(self) -> Path | None:
        """Where the session is autosaved: next to the image file, or under the cache folder
        when that folder is not writable; an image without a file under the cache folder,
        by its pixels (:func:`~napari_sam.annotate.memory_sessions.memory_session_file`);
        None: no image. A file of its own when another image of that file (of
        those pixels) has its session there (:meth:`own_session_file`)."""
        path = self.image_path()
        if path is None:
            return None if self.source is None else self.own_session_file(self._memory_file())
        beside = S.session_file_for(path)
        return self.own_session_file(
            beside if folder_writable(beside.parent) else fallback_session_file(path))

    def _memory_file(self) -> Path:
        """The autosave of this image without a file, by its pixels."""
        return memory_session_file(self._digest("memory"))

    def _digest(self, what: str) -> str:
        """The image's ``"hash"`` (:func:`napari_sam.session.image_hash` of the stack SAM
        sees) or ``"memory"`` key
        (:func:`~napari_sam.annotate.memory_sessions.memory_image_key`), kept for the last :data:`KEPT_KEYS` data objects (and channels)
        picked while they live: going back to an array does not hash it again on the UI
        thread (a data object that cannot be referred to weakly: while it is the last)."""
        data = self.image_identity()[1]
        key = (id(data), self.channel_axis, self.channel)
        known = self._digests  # (data id, channel axis, channel) -> (ref, {what: digest})
        last = next(reversed(known), None)
        ref, found = known.pop(key, (None, {}))
        if ref is None or (ref() is not data if ref is not _SAME else key != last):
            try:
                ref, found = weakref.ref(data), {}
            except TypeError:  # (napari's layer data is weakly referable; a list is not)
                ref, found = _SAME, {}
        if "hash" not in found:
            found["hash"] = S.image_hash(self.hashed_stack())  # (a movie's: all time points)
        if what == "memory" and what not in found:
            found[what] = memory_image_key(found["hash"], self.hashed_stack(), data)
        known[key] = (ref, found)  # (the newest last)
        while len(known) > KEPT_KEYS:
            known.pop(next(iter(known)))
        return found[what]

    def own_session_file(self, file: Path) -> Path:
        """``file`` (an image file's session file), or this image's own beside it,
        ``<image file>.<layer name>.sam-session.json``, when ``file`` holds the session of
        another image of the same file: made on other pixels, under another name (napari
        opens a file with a channel axis as one layer per channel, 'two' and 'two [1]').
        The two channels' autosaves kept each other's session aside at every commit, and
        each channel's log started again after the other's commits."""
        if self._holds_this_image(file):
            return file
        name = self.image_name()
        slug = re.sub(r"[^\w.-]+", "_", name).strip("._")[:60] or "image"
        stem = file.name[: -len(S.SESSION_FILE_SUFFIX)]  # (names too long: shortened)
        own = file.with_name(S.fit_file_name(f"{stem}.{slug}") + S.SESSION_FILE_SUFFIX)
        if self._holds_this_image(own):
            return own
        # another layer's name made the same slug ('two [1]', 'two (1)'): the name's hash too
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        return file.with_name(S.fit_file_name(f"{stem}.{slug}-{digest}") + S.SESSION_FILE_SUFFIX)

    def _holds_this_image(self, file: Path) -> bool:
        """Whether the session file ``file`` is free for this image's session: absent,
        without an image record, or recording this image (its name and shape, or its pixels:
        napari names a stack read from several files, and its source, after the first file)."""
        image, shape = self._image_records.read(file), list(self.source.shape)
        if image is not None and image.get("time_points") != self.movie_record().get(
                "time_points"):  # a movie's and a volume's (or another movie's): not shared
            return False
        return image is None or (image.get("name") == self.image_name() and image.get(
            "shape", shape) == shape) or image.get("hash") == self._hash()

    def saved_session_path(self) -> Path | None:
        """The autosaved session of this image, next to it or under the cache folder, or in
        an alternate of those (written while another session autosaved there): the newest
        when several exist, leaving out those another live session autosaves in (its log goes
        on there); None when there is none."""
        found = self._free_session_files()
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    def _free_session_files(self) -> list[Path]:
        """This image's session files no other live session autosaves in."""
        self.wait_autosave()
        return [p for p in self._session_files() if not self._claims.taken(p)]

    def _session_files(self, files=None) -> list[Path]:
        """The session files of this image that exist: ``files`` (default: next to it and
        under the cache folder; without a file: under the cache folder by its pixels) or its
        own beside those, each with its alternates that record this image (not another
        channel layer's of the file)."""
        path = self.image_path()
        if files is None and path is None:  # (none saved yet: the pixels need no hash)
            files = () if self.source is None or not (
                memory_sessions_folder().is_dir()) else (self._memory_file(),)
        elif files is None:
            files = (S.session_file_for(path), fallback_session_file(path))
        return [q for p in map(self.own_session_file, files)
                for q in (p, *filter(self._holds_this_image, alternate_session_files(p)))
                if q.is_file()]
