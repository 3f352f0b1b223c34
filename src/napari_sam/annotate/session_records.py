"""The ``image`` record of session files, parsed again only when a file's content changed.

Each commit's autosave asks whose session file it is (the image record: name and pixel hash,
:meth:`napari_sam.annotate.session_places.SessionPlaces.own_session_file`) on napari's UI thread,
and parsed the whole file for it, every operation of the session: a stall that grew with the
session (``benchmarks/bench_session_records.py``). :class:`ImageRecords` keeps, per path, the
bytes of the file it last parsed and their record: a file whose bytes are those is not parsed
again (reading and comparing 360 kB, 300 commits, took 0.05 ms here, the parse 3 ms); any
other content (another dock's or process's file, one rewritten within one clock tick with its
size kept, which fooled a cache keyed by inode, time stamp and size) is parsed. The autosave
reads the file it wrote right after writing it (:meth:`ImageRecords.read`, on the worker
thread in the GUI), so the UI thread's next look is a comparison.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

__all__ = ["ImageRecords", "parse_image_record"]


def parse_image_record(data: bytes) -> dict | None:
    """The ``image`` record of a session file's bytes (None: not a session record)."""
    try:
        image = json.loads(data.decode("utf-8-sig")).get("image")
    except (ValueError, AttributeError):
        return None
    return image if isinstance(image, dict) else None


class ImageRecords:
    """The image records of session files by path, each with the bytes it was parsed from
    (thread-safe: the autosave worker and the UI thread both use it)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._known: dict[str, tuple[bytes, dict | None]] = {}

    def read(self, path: Path) -> dict | None:
        """The ``image`` record of the session file at ``path`` (None: no file, or no session
        record in it); parsed only when its bytes are not those parsed last for ``path``."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        key = str(path.absolute())
        with self._lock:
            known = self._known.get(key)
        if known is not None and known[0] == data:
            return known[1]
        image = parse_image_record(data)
        with self._lock:
            if len(self._known) >= 16:  # (a dock looks at a few files: its image's)
                self._known.clear()
            self._known[key] = (data, image)
        return image
