"""Opening a batch input: read lazily (:func:`napari_sam.io.read_image`), put in the standard
layout and handed out one slice at a time through :class:`napari_sam.io.SliceSource`."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.io import SliceSource
from napari_sam.io.chunk_cache import chunk_cached
from napari_sam.io.ome_zarr import second_series
from napari_sam.words import for_count


@dataclass
class OpenedImage:
    """A batch input opened lazily: its slices, whether it is 2D, and the axes, pixel size and
    unit its labels get."""

    stack: SliceSource  # (S, Y, X[, C])
    is2d: bool
    label_axes: str  # "YX", "ZYX" or "TYX"
    pixel_size: tuple | None
    unit: str | None
    source_axes: str
    axes_guessed: bool = False  # no metadata named the axes: guessed from the shape
    channels_as_colour: int = 0  # 3 or 4: channels read as RGB(A) (see _channels_as_colour)
    series: tuple = ()  # (count, [(axes, shape) of up to 3 others]) of a multi-series TIFF
    channel_note: str = ""  # --channel N not used: the file has no channel axis (certain)
    axes_note: str = ""  # --axes overrides other axes that the file's metadata names
    file_axes: str | None = None  # the axes the file's metadata names (file_named_axes)
    time_interval: dict | None = None  # a movie's time between frames (io.time_interval)

    @property
    def label_shape(self) -> tuple[int, ...]:
        s = self.stack.shape[:3]
        return s[1:] if self.is2d else s

    @property
    def summary_note(self) -> str:
        """What the batch's summary says beside this input's output: ``--channel`` not used,
        ``--axes`` overriding the file's own axes; "" when neither."""
        return "; ".join(n for n in (self.channel_note, self.axes_note) if n)


def open_image(path: Path, ctx: Context, *, check: bool = True) -> OpenedImage:
    """Read ``path`` lazily and put it in the standard layout (see :func:`napari_sam.io.to_standard`);
    for ``auto`` and ``segment``, a movie of volumes raises :class:`MovieOfVolumes` unless
    ``ctx.time_point`` picks one of its time points.
    An input no reader can open (a FIFO: reading it would wait forever) fails first
    (:func:`~napari_sam.batch.job_checks.check_input_file`), unless ``check`` is False: the
    caller checked it already (the runners of :func:`napari_sam.batch.runners.run_job`, which
    checks each job's input once, before anything reads it)."""
    from napari_sam.batch.job_checks import check_input_file

    if check:
        check_input_file(path)
    img = read_with_axes(path, ctx)
    # a tiled or compressed file's chunks decoded once, not once per overlapping window
    img = dataclasses.replace(img, data=chunk_cached(img.data))
    declared = int(img.metadata.get("channels_declared", 0)) if ctx.channel is None else 0
    if declared == 4:  # would be read as RGBA, its 4th channel dropped as alpha
        raise ValueError(
            f"The file has 4 channels (axes {img.axes}, shape {tuple(img.data.shape)}), named "
            "as channels by its metadata, not as the colour samples of an RGBA image; pick one "
            "channel with --channel N (0 to 3)")
    channel_note = no_channel_note(path, ctx, img)
    movie = movie_time_points(img, ctx) if ctx.time_point is None else 0
    if movie and ctx.command in ("auto", "segment"):  # each time point: a job of its own
        raise MovieOfVolumes(f"a movie of {movie} time points (axes {img.axes})", movie)
    try:
        std = img.to_standard(channel=None if channel_note else ctx.channel,
                              select=None if ctx.time_point is None else {"T": ctx.time_point})
    except ValueError as exc:
        if not nio.axes_inferred(img.metadata):
            raise
        shape = tuple(int(n) for n in img.data.shape)
        hint = "--axes CZYX (or ZCYX) --channel N"
        if len(shape) == 3:  # one letter per dimension: a (C, Y, X) file
            hint = "--axes CYX --channel N"
        elif len(shape) == 4:  # the shorter of the two stack axes as channels
            hint = f"--axes {'CZYX' if shape[0] <= shape[1] else 'ZCYX'} --channel N"
            if ctx.command in ("auto", "segment"):  # a movie only where its axes are named
                hint += ("; if it is a movie of volumes (time, z, y, x), say so: --axes TZYX "
                         "(each time point is then segmented as its own volume)")
        raise ValueError(
            f"no metadata names the axes of its shape {shape}; read as {img.axes} (a guess "
            f"from the shape): {str(exc).rstrip('.')}. If an axis holds channels, say so: "
            f"{hint}") from None
    axes = std.axes
    is2d = axes in ("YX", "YXC")
    stack = SliceSource(std.data, expand=is2d, path=path)
    label_axes = axes.replace("C", "")
    return OpenedImage(stack, is2d, label_axes, std.pixel_size, std.unit or "um", img.axes,
                       nio.axes_inferred(img.metadata),
                       _channels_as_colour(declared, ctx, std),
                       (int(img.metadata.get("series_count", 1)),
                        list(img.metadata.get("other_series", ()))), channel_note,
                       axes_override_note(ctx, img), file_named_axes(img),
                       img.metadata.get("time_interval"))


class MovieOfVolumes(ValueError):
    """The input of an ``auto`` or ``segment`` job is a movie of volumes (``TZYX``): its
    runner runs on each time point instead
    (:func:`napari_sam.batch.time_lapse.run_time_lapse`); ``time_points`` says how many.
    Uncaught, its message is the refusal of two stack axes."""

    def __init__(self, message: str, time_points: int):
        super().__init__(message)
        self.time_points = int(time_points)


def movie_time_points(img, ctx: Context) -> int:
    """The number of time points of a movie of volumes: ``img``'s axes, named by its
    file's metadata or by ``--axes``, hold both ``T`` and ``Z`` longer than 1; 0 for any
    other image, and for axes guessed from the shape (a short axis may hold channels: its
    error says how to name the axes).

    Parameters
    ----------
    img : napari_sam.io.ImageData
        As :func:`read_with_axes` read it.
    ctx : Context

    Returns
    -------
    int
    """
    if ctx.axes is None and nio.axes_inferred(img.metadata):
        return 0
    size = dict(zip(img.axes, (int(n) for n in img.data.shape)))
    return size["T"] if size.get("T", 1) > 1 and size.get("Z", 1) > 1 else 0


#: The formats whose metadata can name a file's axes (not ``.npy``, nor a PNG or JPEG).
NAMING_FORMATS = ("tiff", "ome-tiff", "imagej-tiff", "zarr", "ome-zarr")


def file_named_axes(img) -> str | None:
    """The axes the metadata of ``img``'s file names (OME, ImageJ, a tifffile description,
    OME-Zarr or zarr dimension names), as ``TZCYX`` letters; None where it names none, or
    names colour samples (an RGB TIFF's ``S``: a layout, which the notes on colour planes
    say how to override) or axes tifffile does not know (``Q``, ``I``, ...).

    Parameters
    ----------
    img : napari_sam.io.ImageData
        The file as :func:`napari_sam.io.read_image` read it, with or without ``axes``.

    Returns
    -------
    str or None
    """
    src = str(img.metadata.get("source_axes") or "").upper()
    if img.metadata.get("format") not in NAMING_FORMATS or len(src) != len(img.data.shape):
        return None
    return src if set(src) <= set("TZCYX") else None


def axes_override_note(ctx: Context, img) -> str:
    """The note for ``--axes`` that reads a file otherwise than its metadata names its axes
    (:func:`file_named_axes`): "--axes ZYX overrides the file's axes TZYX ..."; "" without
    ``--axes``, where they are the same, or where the metadata names none."""
    own = file_named_axes(img) if ctx.axes is not None else None
    if own is None or own == img.axes:
        return ""
    return (f"--axes {img.axes} overrides the file's axes {own} (from its metadata); if "
            "those are right, run it without --axes")


def read_with_axes(path: Path, ctx: Context):
    """:func:`napari_sam.io.read_image` (lazy) with ``ctx.axes``; ``--axes`` that do not fit
    the data (another number of letters) raise a ValueError that also names the axes the
    file's metadata names, when it names them."""
    try:
        return nio.read_image(path, axes=ctx.axes, lazy=True)
    except nio.ImageReadError:
        raise
    except ValueError as exc:
        if ctx.axes is None:
            raise
        try:
            img = nio.read_image(path, lazy=True)
        except Exception:  # noqa: BLE001 - the error about --axes stands alone
            raise exc from None
        own = file_named_axes(img)
        if own is None:
            raise
        shape = tuple(int(n) for n in img.data.shape)
        raise ValueError(
            f"--axes {ctx.axes} does not fit this file: its data has {len(shape)} dimensions "
            f"(shape {shape}), axes {own} from its metadata; run it without --axes, apart "
            "from the files --axes is meant for") from None


def no_channel_note(path: Path, ctx: Context, img) -> str:
    """``--channel N`` applies to the files that have a channel axis: for a file without one,
    whose axes are certain (its metadata names them, or a 2D image: nothing could hold
    channels), the note that says it is segmented as it is; "" otherwise (no ``--channel``,
    a channel axis, ``--axes`` given, or axes guessed from the shape: a guessed ``ZYX`` may
    be ``CYX``, and reading it fails, saying so)."""
    if ctx.channel is None or ctx.axes is not None or "C" in img.axes:
        return ""
    if nio.axes_inferred(img.metadata) and len(img.data.shape) > 2:
        return ""
    why = "from its metadata" if not nio.axes_inferred(img.metadata) else "a 2D image"
    return (f"--channel {ctx.channel} not used: the file has no channel axis (axes "
            f"{img.axes!r}, {why}); segmented as it is")


def channel_applies(path: Path, ctx: Context) -> bool:
    """Whether ``--channel`` selects something in ``path`` (False: it has no channel axis and
    its axes are certain, :func:`no_channel_note`; outputs written with or without
    ``--channel`` are then the same). Reads the header only; True when it cannot be read."""
    try:
        img = nio.read_image(path, axes=ctx.axes, lazy=True)
    except Exception:  # noqa: BLE001 - its job reads it again and says why
        return True
    probe = ctx if ctx.channel is not None else _with_channel(ctx)
    return not no_channel_note(path, probe, img)


def _with_channel(ctx: Context) -> Context:
    import dataclasses

    return dataclasses.replace(ctx, channel=0)


def _channels_as_colour(declared: int, ctx: Context, std) -> int:
    """3: the file's 3 channels (named as channels by its metadata) are read as RGB; 4: a
    channel axis of 4 named by ``--axes`` is read as RGBA (the 4th dropped as alpha); else 0."""
    if not std.axes.endswith("C") or ctx.channel is not None:
        return 0
    if declared == 3:
        return 3
    return 4 if ctx.axes is not None and int(std.data.shape[-1]) == 4 else 0


def colour_planes_note(job, ctx: Context, opened: OpenedImage) -> str | None:
    """A note when a file's 3 or 4 planes were read as the colour channels of one 2D image
    (or of each page of a stack), although they are not 8-bit colour (tifffile writes a 3- or
    4-slice uint16 stack, or a (Z, 4, Y, X) one, so by default): the user may have meant a
    stack (or channels). None otherwise, or with ``--axes`` given."""
    axes = str(opened.source_axes or "")
    shape = opened.stack.shape
    if (ctx.axes is not None or shape[-1] not in (3, 4)
            or np.dtype(opened.stack.dtype) == np.uint8):
        return None
    n = int(shape[-1])
    if opened.is2d and len(axes) == 3 and axes[0] in "CS":
        return (f"{job.name}: read as one 2D colour image (the file stores its {n} planes as "
                f"colour samples, axes {axes}); if they are {n} slices of a stack, rerun with "
                "--axes ZYX")
    if (not opened.is2d and len(axes) == 4 and axes[1] in "CS" and axes[2:] == "YX"
            and not opened.channels_as_colour):  # (channels its metadata names: their note)
        alpha = ", the 4th dropped as alpha" if n == 4 else ""
        return (f"{job.name}: read as {shape[0]} slices of colour images (each of the file's "
                f"{shape[0]} pages stores {n} planes as colour samples, read as red, green, "
                f"blue{alpha}); if the planes are channels (stains), rerun with --axes ZCYX "
                f"--channel N (0 to {n - 1})")
    return None


#: Slices this elongated (long side / short side), read with guessed axes, get a note: a
#: (Y, X, Z) array (MATLAB's or scipy's layout) guessed as (Z, Y, X) gives such slices.
ELONGATED_SLICE = 4


#: A stack this short (slices), read with guessed axes, gets a note: its first axis may hold
#: channels (a (C, Y, X) array saved without metadata), not slices.
FEW_SLICES = 3


def guessed_axes_note(job, ctx: Context, opened: OpenedImage) -> str | None:
    """A note when no metadata named a stack's axes (:func:`napari_sam.io.axes_inferred`): the guess
    gives few slices (:data:`FEW_SLICES`: the first axis may hold channels), elongated slices
    (:data:`ELONGATED_SLICE`: the last axis may be the stack's, ``--axes YXZ``), or a z stack
    that ``auto`` or ``segment`` propagates along z (a movie is propagated along t: ``--axes
    TYX``). None for 2D images, with ``--axes`` given, or for ``embed`` and ``auto
    --no-propagate`` stacks."""
    if ctx.axes is not None or opened.is2d or not opened.axes_guessed:
        return None
    h, w = (int(s) for s in opened.stack.shape[1:3])
    shape = tuple(int(s) for s in opened.stack.shape[:3])
    colour = len(opened.stack.shape) == 4  # (S, Y, X, C): its channels are known
    if shape[0] <= FEW_SLICES and ctx.channel is None and not colour:
        return (f"{job.name}: no metadata names its axes; read as {opened.label_axes} {shape}, "
                f"a stack of {shape[0]} slices linked along z; if its first axis holds "
                "channels, rerun with --axes CYX --channel N (one channel) or move the file "
                "to a run of its own")
    if max(h, w) >= ELONGATED_SLICE * max(1, min(h, w)):
        return (f"{job.name}: no metadata names its axes; read as {opened.label_axes} {shape}, "
                f"i.e. {shape[0]} slices of {h} x {w} px; if the last axis is the stack's (e.g. "
                "a (Y, X, Z) array), rerun with --axes YXZ")
    if (ctx.command == "embed" or not ctx.params.get("propagate", True)
            or ctx.params.get("axis_kind") == "t"):  # (--axis-kind t: propagated along t)
        return None  # (linking alone does not depend on what the first axis is)
    return (f"{job.name}: no metadata names its axes; read as {opened.label_axes} {shape}, "
            f"a z stack: objects are propagated along z and stop where they fade; if its first "
            "axis is time (a movie), rerun with --axes TYX (with --axes ZYX, no note)")


def channels_as_colour_note(job, opened: OpenedImage) -> str | None:
    """A note when a file's 3 channels (named as channels by its metadata, e.g. an ImageJ
    hyperstack's, not as colour samples) were read as the red, green and blue of a colour
    image, or 4 channels named by ``--axes`` as RGBA; None otherwise."""
    if opened.channels_as_colour == 4:
        return (f"{job.name}: its 4 channels (axes {opened.source_axes}) are read as the red, "
                "green, blue and alpha of a colour image: the 4th is not used; to segment one "
                "channel, rerun with --channel N (0 to 3)")
    if not opened.channels_as_colour:
        return None
    return (f"{job.name}: its 3 channels (axes {opened.source_axes}) are read as the red, green "
            "and blue of a colour image; to segment one channel (e.g. the nuclei's), rerun "
            "with --channel N (0 to 2)")


def other_series_note(job, opened: OpenedImage) -> str | None:
    """A note when the TIFF holds more than one image series (the positions of a
    multi-position OME-TIFF, several images saved into one file): only the first is read."""
    count, others = opened.series or (1, [])
    if count < 2:
        return None
    shown = ", ".join(f"{axes} {shape}" for axes, shape in others)
    more = f" and {count - 1 - len(others)} more" if count - 1 > len(others) else ""
    how = ("save each series as a file of its own (Fiji: Bio-Formats Importer, then File > "
           "Save As > Tiff)")
    second = second_series(Path(job.input)) if nio.is_zarr_path(Path(job.input)) else None
    if second is not None:  # a bioformats2raw store: name the series' group
        how = f"pass each one's group, e.g. {str(second)!r}"
    return (f"{job.name}: the file holds {count} image series; only the first "
            f"({opened.label_axes} {tuple(int(n) for n in opened.label_shape)}) is "
            f"segmented, not the {'others' if count > 2 else 'other'} ({shown}{more}); to "
            f"segment them, {how}")


def announce_colour_planes(job, ctx: Context, opened: OpenedImage) -> None:
    """Print :func:`colour_planes_note`, :func:`channels_as_colour_note`,
    :func:`other_series_note` and :func:`guessed_axes_note` on stderr (nothing when quiet or
    no note)."""
    notes = [] if ctx.quiet else [opened.channel_note and f"{job.name}: {opened.channel_note}",
                                  opened.axes_note and f"{job.name}: {opened.axes_note}",
                                  colour_planes_note(job, ctx, opened),
                                  channels_as_colour_note(job, opened),
                                  other_series_note(job, opened),
                                  guessed_axes_note(job, ctx, opened)]
    for note in filter(None, notes):
        from tqdm.auto import tqdm

        tqdm.write(f"napari-sam: note: {note}", file=sys.stderr)


def announce_constant_prompt_slices(job: Job, ctx: Context, opened) -> dict[str, list]:
    """Say (unless quiet) which prompted slices of ``job``'s input hold one value in every
    pixel: SAM's masks there follow the prompts alone, not the image (a blank frame, the wrong
    file or the wrong channel). Returns ``{str(slice): [value per channel]}`` for the output
    metadata ({} when every prompted slice varies)."""
    from napari_sam.automatic import constant_value, constant_words

    slices = sorted({int(e["slice"]) for items in job.prompts.values() for e in items
                     if not e.get("stop") and 0 <= int(e["slice"]) < len(opened.stack)})
    constant = {}
    for z in slices:
        value = constant_value(opened.stack[z])
        if value is not None:  # NaN (no finite pixel) as null: JSON has no NaN
            constant[str(z)] = [None if v != v else float(v) for v in value]
    if constant and not ctx.quiet:
        import sys

        from tqdm.auto import tqdm

        where = ("the image is" if opened.is2d else
                 f"prompted {for_count(len(constant), 'slice')} {', '.join(constant)} "
                 f"{for_count(len(constant), 'is', 'are')}")
        tqdm.write(f"napari-sam: note: {job.name}: {where} constant "
                   f"({constant_words(constant[next(iter(constant))])}): "
                   "the masks there follow the prompts alone, not the image; check that this "
                   "is the right file, slice and channel (--channel)", file=sys.stderr)
    return constant


def open_session_image(job: Job, ctx: Context, sess, *, say: bool = True):
    """Open ``job.input`` for replaying ``sess``: with ``--axes`` as given; without, as its
    metadata says, and when that does not give the session's (Z, Y, X) shape, with the axes
    of the layer the session was made on (:func:`napari_sam.session.recorded_axes`; e.g. a
    3- or 4-slice stack whose TIFF stores the slices as colour samples). Says so unless
    quiet or ``say`` is False (a check before the jobs). Without ``--channel``, the channel
    the session's dock segmented alone (its ``image.channel``) is read. Returns
    :class:`~napari_sam.batch.reading.OpenedImage`."""
    import dataclasses

    from napari_sam import session as S

    channel = sess.image.get("channel")  # the channel the dock segmented alone
    if ctx.channel is None and isinstance(channel, int) and not isinstance(channel, bool):
        ctx = dataclasses.replace(ctx, channel=channel)
    opened = open_image(job.input, ctx)
    shape = (1, *opened.label_shape) if opened.is2d else tuple(opened.label_shape)
    axes = S.recorded_axes(sess)
    if ctx.axes is not None or tuple(shape) == sess.shape or axes is None:
        return opened
    try:
        again = open_image(job.input, dataclasses.replace(ctx, axes=axes))
    except Exception:  # noqa: BLE001 - the first reading stands; check_image says why
        return opened
    shape2 = (1, *again.label_shape) if again.is2d else tuple(again.label_shape)
    if tuple(shape2) != sess.shape:
        return opened
    again = dataclasses.replace(again, axes_note="")  # the session's axes: said below
    if say and not ctx.quiet:
        import sys

        from tqdm.auto import tqdm

        tqdm.write(f"  {job.name}: read with axes {axes} (its file says "
                   f"{opened.source_axes}, {shape}), as the session's layer "
                   f"{tuple(sess.shape)}; give --axes to read it otherwise", file=sys.stderr)
    return again
