"""The text of a prompts file as spreadsheets and editors save it: UTF-8 with or without a
byte-order mark, UTF-16 with one (Excel's "Unicode Text", PowerShell 5's ``Out-File``) or
without one (``iconv -t UTF-16LE``, some Windows tools), and Excel's ``sep=,`` line before
the header (:func:`read_prompts_text`); anything else is a clear error."""

from __future__ import annotations

import re
from pathlib import Path

from napari_sam.batch.inputs import BatchError

__all__ = ["read_prompts_text"]

#: Excel's first line naming the separator (``sep=,``, ``sep=;``, ``sep=<tab>``).
_SEP_LINE = re.compile(r"\Asep=(.)\n")


def _encoding(data: bytes) -> str:
    """The codec of ``data``: UTF-16 where it has its byte-order mark or, without one, where
    its start has zeros in every other byte (the header's ASCII letters in UTF-16) and
    hardly any in the others (a character such as 一, U+4E00, has a zero byte of its own;
    UTF-8 text has none); else UTF-8 (a BOM dropped)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    head = data[:512 if len(data) > 512 else len(data) // 2 * 2]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if len(head) >= 4 and even * 4 <= odd and odd >= len(head) / 4:
        return "utf-16-le"  # (half the bytes of the ASCII header, at least, are its zeros)
    if len(head) >= 4 and odd * 4 <= even and even >= len(head) / 4:
        return "utf-16-be"
    return "utf-8-sig"


def read_prompts_text(path: Path) -> str:
    """The prompts file ``path`` as text with ``\\n`` line ends and without Excel's ``sep=``
    line (a ``sep=;`` or tab is then told by the header: see ``prompts``); BatchError where it
    cannot be read or is no text of these encodings."""
    codec = "utf-8-sig"
    try:
        data = path.read_bytes()
        codec = _encoding(data)
        # as read_text reads it: "\r\n" and "\r" are line ends too
        text = data.decode(codec)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        if codec.startswith("utf-16"):  # its BOM or zeros said UTF-16: not a Latin-1 file
            line = exc.object[: exc.start].decode(codec).count("\n") + 1
            raise BatchError(
                f"prompts file {str(path)!r} is UTF-16 text that cannot be decoded "
                f"({exc.reason} at byte {exc.start}, line {line}: a truncated or damaged "
                "file?); save it again, as UTF-8 (Excel: \"CSV UTF-8\") or UTF-16"
            ) from None
        line = exc.object[: exc.start].count(b"\n") + 1
        raise BatchError(
            f"prompts file {str(path)!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
            f"on line {line}); save it as UTF-8 (Excel: \"CSV UTF-8\"; iconv -f latin1 -t utf-8)"
        ) from None
    except OSError as exc:
        raise BatchError(f"prompts file {str(path)!r} cannot be read: {exc.strerror or exc}; "
                         "check its permissions") from None
    return _SEP_LINE.sub("", text, count=1)
