"""Axes strings: the letters ``T Z C Y X``, checking them against a shape, guessing them from a
shape alone, and mapping tifffile's axis letters onto them."""

from __future__ import annotations

from collections.abc import Sequence

from napari_sam.words import for_count

#: Letters allowed in an axes string.
AXES_LETTERS = "TZCYX"
#: Spatial letters, in the order pixel sizes are reported.
SPATIAL = "ZYX"
#: Slices narrower than this (pixels along Y or X) are refused when the axes were inferred
#: (guessed from the shape, or tifffile's unknown ``Q`` axes): such a shape means a channel
#: axis read as X (a (Y, X, 2) TIFF without axes metadata), and nothing in it can be
#: segmented. Axes given by the user or named by the file's metadata are kept.
MIN_INFERRED_SIDE = 8


def channel_last_axes(shape: Sequence[int]) -> str | None:
    """The axes that read the last dimension of ``shape`` as channels (``YXC``, ``ZYXC``,
    ``TZYXC``), or None when that does not fit: fewer than 3 or more than 5 dimensions, a
    last dimension too large for channels, or slices that would still be narrower than
    :data:`MIN_INFERRED_SIDE` pixels."""
    shape = tuple(int(s) for s in shape)
    if not 3 <= len(shape) <= 5 or shape[-1] >= MIN_INFERRED_SIDE:
        return None
    if min(shape[-3], shape[-2]) < MIN_INFERRED_SIDE:
        return None
    return guess_axes(shape, channel_axis=-1)


def validate_axes(axes: str, shape: Sequence[int]) -> str:
    """Check an axes string against a data shape and return it upper-cased.

    Raises ``ValueError`` naming the problem and showing the shape when the length differs
    from ``len(shape)``, a letter is not one of ``TZCYX``, a letter repeats, or ``Y`` / ``X``
    is missing.
    """
    shape = tuple(int(s) for s in shape)
    if not isinstance(axes, str):
        raise ValueError(f"axes must be a string such as 'ZYX', got {axes!r} (data shape {shape})")
    ax = axes.strip().upper()
    problem = None
    bad = sorted({a for a in ax if a not in AXES_LETTERS})
    dup = sorted({a for a in ax if ax.count(a) > 1})
    if len(ax) != len(shape):
        problem = f"it has {len(ax)} letters but the data has {len(shape)} dimensions"
    elif bad:
        problem = (f"{for_count(len(bad), 'letter')} {', '.join(bad)} not allowed; use letters "
                   f"from {AXES_LETTERS}")
    elif dup:
        problem = (f"letter {dup[0]} appears more than once" if len(dup) == 1 else
                   f"letters {', '.join(dup)} appear more than once")
    elif "Y" not in ax or "X" not in ax:
        problem = "both Y and X are required"
    if problem:
        # a last dimension too small to be X is most likely channels (a (Z, Y, X, 2) stack)
        eg = channel_last_axes(shape)
        if eg is None:
            eg = guess_axes(shape) if 2 <= len(shape) <= 5 else "ZYX"
        if "T" in eg and "Z" in eg and "C" not in eg:  # one stack axis only: suggest a channel
            eg = eg.replace("T", "C", 1)
        pick = " (then choose a channel with --channel N)" if "C" in eg else ""
        raise ValueError(
            f"Invalid axes {axes!r} for data of shape {shape}: {problem}. "
            f"Give one letter from {AXES_LETTERS} per dimension, e.g. {eg!r}{pick}."
        )
    return ax


def guess_axes(shape: Sequence[int], *, channel_axis: int | None = None) -> str:
    """Guess axes from a shape alone.

    2D -> ``YX``; 3D -> ``YXC`` when the last dimension is 3 or 4, else ``ZYX``;
    4D -> ``ZYXC`` (last dimension 3 or 4) else ``TZYX``; 5D -> ``TZYXC`` / ``TZCYX``.
    ``channel_axis`` marks one dimension as ``C`` (the rest are guessed around it).
    """
    shape = tuple(int(s) for s in shape)
    n = len(shape)
    if channel_axis is not None:
        if not -n <= channel_axis < n:
            raise ValueError(f"channel_axis {channel_axis} out of range for shape {shape}")
        if not 3 <= n <= 5:
            raise ValueError(
                f"cannot guess axes for shape {shape} with channel_axis={channel_axis}"
            )
        c = channel_axis % n
        rest = {2: "YX", 3: "ZYX", 4: "TZYX"}[n - 1]
        return rest[:c] + "C" + rest[c:]
    if n == 2:
        return "YX"
    rgb = shape[-1] in (3, 4)
    if n == 3:
        return "YXC" if rgb else "ZYX"
    if n == 4:
        return "ZYXC" if rgb else "TZYX"
    if n == 5:
        return "TZYXC" if rgb else "TZCYX"
    raise ValueError(f"cannot guess axes for data of shape {shape}: expected 2 to 5 dimensions")


def map_tifffile_axes(src: str, shape: Sequence[int]) -> str | None:
    """Map tifffile's axes letters to ``TZCYX``; None when impossible.

    Unknown letters (tifffile's ``Q`` of a plain shaped TIFF) become ``Z``, then ``T``; of
    two unknown axes the one of size 1 is ``T`` (a ``(1, Z, Y, X)`` array is a stack, not a
    time series of one slice), else the outer one is ``T`` (as :func:`guess_axes`).
    """
    out = list(src.upper())
    for i, a in enumerate(out):
        if a == "S":
            out[i] = "C" if "C" not in src.upper() else "?"
    unknown = [i for i, a in enumerate(out) if a not in AXES_LETTERS]
    free = [c for c in ("Z", "T") if c not in out]
    if len(unknown) > len(free):
        return None
    if len(unknown) == 2 == len(free):
        sizes = [int(shape[i]) if i < len(shape) else 0 for i in unknown]
        order = unknown[::-1] if sizes[0] != 1 and sizes[1] == 1 else unknown
        out[order[0]], out[order[1]] = "T", "Z"
    else:
        for i, c in zip(unknown, free):
            out[i] = c
    ax = "".join(out)
    if len(set(ax)) != len(ax) or "Y" not in ax or "X" not in ax or len(ax) != len(shape):
        return None
    return ax
