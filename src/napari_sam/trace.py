"""Propagation trace: per object, the numbers along the stack and the slices to look at.

After :func:`napari_sam.segment_volume`, :func:`propagation_trace` gives for every object,
slice by slice, its predicted IoU (``VolumeResult.scores``), its area and its contrast with
its surroundings (:func:`napari_sam.volume.mask_contrast`), where and why it stopped, and
*flags*: slices worth a look, each with what to do. The GUI draws it in the dock, the CLI
writes it into the output's sidecar (``extra.trace``) and ``napari-sam report`` renders it
as PNG (:func:`render_png`). Pure numpy and Pillow; no Qt.

Flags (``kind``):

``stopped_early``
    Propagation stopped for a reason that is not final (the stack edge, a stop marker,
    meeting its other end, running into another object: "rebounded", "claimed") and the
    object's last mask, laid on one of the next :data:`LOOK_AHEAD` slices, stands out
    there as strongly as the object ever did (contrast at least :data:`STILL_THERE` of its
    peak contrast, same sign): the object is back. The flag sits on that slice and its
    ``fix`` is a point to add there (the last mask's centre). On the real nuclei stack of
    the development data, where propagation of the demo model overshoots the ends of
    blurred nuclei rather than stopping early, no object is flagged.
``area_jump``
    The area changed by more than :data:`AREA_JUMP` times from the previous slice.
``overlap``
    More than :data:`OVERLAP` of the object's footprint on the previous slice is held by
    another object on this slice (one object took the other's place).
``score_drop``
    The predicted IoU fell by more than :data:`SCORE_DROP` from the previous slice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "AREA_JUMP",
    "LOOK_AHEAD",
    "OVERLAP",
    "SCORE_DROP",
    "STILL_THERE",
    "automatic_trace",
    "describe_slices",
    "propagation_trace",
    "render_pages",
    "render_png",
    "slice_runs",
    "stop_summary",
]

AREA_JUMP = 1.8
OVERLAP = 0.25
SCORE_DROP = 0.15
LOOK_AHEAD = 3
STILL_THERE = 0.75
#: up to this many objects a trace PNG has one row per object, its three plots and flags
#: written out; more are drawn as a grid of small panels, :data:`PAGE_OBJECTS` per PNG
DETAILED_OBJECTS = 6
#: objects per PNG of the grid (a page of 20 rows of 3 panels, 2500 px high); the next ones
#: go to ``<output>.trace-2.png`` and so on (one PNG of 98 objects was 900 x 14740 px)
PAGE_OBJECTS = 60
GRID_COLUMNS = 3
#: stop reasons that are not early stops (the end of the stack or of the object's run, or
#: another object ahead)
FINAL_REASONS = ("edge", "stop_marker", "met", "rebounded", "claimed")


def _contrast(image: np.ndarray, mask: np.ndarray) -> float:
    from napari_sam.volume import mask_contrast

    return float(mask_contrast(image, mask)[0])


def _steps(zs: list[int], first_prompt: int | None) -> list[tuple[int, int]]:
    """Pairs (k, kp) of positions in ``zs``: slice ``zs[k]`` was propagated from
    ``zs[kp]``. Below the first prompted slice propagation runs down (each slice from the
    one above it), elsewhere up (from the one below), so a flag sits on the slice reached
    and names the one it came from."""
    steps = []
    for k in range(1, len(zs)):
        if first_prompt is not None and zs[k] <= first_prompt:
            steps.append((k - 1, k))  # zs[k - 1] reached from zs[k], going down
        else:
            steps.append((k, k - 1))
    return steps


def _flags_along(oid: int, zs: list[int], area, score, labels: np.ndarray,
                 first_prompt: int | None = None) -> list[dict]:
    flags = []
    for k, kp in _steps(zs, first_prompt):
        z, zp = zs[k], zs[kp]
        a, ap = area[k], area[kp]
        if a and ap and max(a / ap, ap / a) > AREA_JUMP:
            flags.append({"slice": z, "kind": "area_jump",
                          "text": f"area {ap} -> {a} pixels from slice {zp}"})
        prev = labels[zp] == oid
        held = labels[z][prev]
        others = held[(held != 0) & (held != oid)]
        if prev.any() and others.size > OVERLAP * prev.sum():
            other = int(np.bincount(others).argmax())
            flags.append({"slice": z, "kind": "overlap",
                          "text": f"object {other} holds {others.size / prev.sum():.0%} of "
                                  f"its place on slice {zp}"})
        s, sp = score[k], score[kp]
        if s is not None and sp is not None and sp - s > SCORE_DROP:
            flags.append({"slice": z, "kind": "score_drop",
                          "text": f"predicted IoU {sp:.2f} -> {s:.2f}"})
    return flags


def _early_stop(oid, direction, reason, last, labels, contrast, reference) -> dict | None:
    """The flag of an object that stopped at ``last`` but seems to go on (or None);
    ``contrast(z, last)`` is the contrast of its last mask on slice z (:func:`_contrasts`)."""
    if reason in FINAL_REASONS or not np.isfinite(reference) or reference == 0:
        return None
    step = 1 if direction == "up" else -1
    mask = labels[last] == oid
    if not mask.any():
        return None
    rows, cols = np.nonzero(mask)
    centre = [float(np.round(rows.mean(), 1)), float(np.round(cols.mean(), 1))]
    for k in range(1, LOOK_AHEAD + 1):
        z = last + step * k
        if not 0 <= z < labels.shape[0]:
            return None
        c = contrast(z, last)
        if np.isfinite(c) and c * np.sign(reference) >= STILL_THERE * abs(reference):
            return {"slice": z, "kind": "stopped_early",
                    "text": f"stopped at slice {last} ({reason}) but the object seems to go "
                            f"on: add a point on slice {z}",
                    "fix": {"slice": z, "point": centre}}
    return None


def _present(labels: np.ndarray, oid: int) -> list[int]:
    """The slices where object ``oid`` is in ``labels``, ascending."""
    return [int(z) for z in np.flatnonzero((labels == oid).reshape(labels.shape[0], -1).any(1))]


def _contrasts(labels: np.ndarray, stack, present: Mapping[int, list[int]],
               reasons: Mapping[int, Mapping[str, str]]) -> dict:
    """Every contrast a trace needs, ``{(oid, z, zm): contrast of object oid's mask on slice
    zm laid on image slice z}``: its own masks on the slices it is on, and its end masks on
    the :data:`LOOK_AHEAD` slices past each end it did not stop at for good. Each image slice
    is read once for all objects (slice by slice for each object read a lazily read, tiled
    TIFF's tiles once per object: thousands of tile reads on one 1024 x 1024 stack)."""
    wanted: dict[int, set] = {}
    for oid, zs in present.items():
        for z in zs:
            wanted.setdefault(z, set()).add((oid, z))
        for direction, reason in reasons.get(oid, {}).items():
            if not zs or reason in FINAL_REASONS:
                continue
            last, step = (zs[-1], 1) if direction == "up" else (zs[0], -1)
            for k in range(1, LOOK_AHEAD + 1):
                if 0 <= last + step * k < labels.shape[0]:
                    wanted.setdefault(last + step * k, set()).add((oid, last))
    out = {}
    for z in sorted(wanted):
        image = np.asarray(stack[z])
        for oid, zm in sorted(wanted[z]):
            out[oid, z, zm] = _contrast(image, labels[zm] == oid)
    return out


def _one_object(oid, labels, zs, contrasts, scores, reasons, annotated) -> dict:
    """One object's trace record; ``contrasts`` is :func:`_contrasts`' table, None
    without images."""
    area = [int((labels[z] == oid).sum()) for z in zs]
    score = [None if z not in scores else round(float(scores[z]), 4) for z in zs]
    contrast = []
    for z in zs:
        c = contrasts[oid, z, z] if contrasts is not None else np.nan
        contrast.append(None if not np.isfinite(c) else round(c, 4))
    finite = np.asarray([c for c in contrast if c is not None])
    reference = float("nan")
    if finite.size:  # the peak contrast, in the object's sign (bright or dark)
        sign = np.sign(np.median(finite)) or 1.0
        reference = float(sign * np.max(sign * finite))
    stops = {}
    prompted = [int(z) for z in annotated]
    flags = _flags_along(oid, zs, area, score, labels, min(prompted) if prompted else None)
    for direction, reason in reasons.items():
        last = zs[-1] if direction == "up" else zs[0]
        stops[direction] = {"slice": last, "reason": reason}
        if contrasts is not None:
            flag = _early_stop(oid, direction, reason, last, labels,
                               lambda z, zm: contrasts[oid, z, zm], reference)
            if flag is not None:
                flags.append(flag)
    flags.sort(key=lambda f: (f["slice"], f["kind"]))
    return {"id": int(oid), "slices": zs, "iou": score, "area": area, "contrast": contrast,
            "annotated": sorted(int(z) for z in annotated), "stops": stops, "flags": flags}


def propagation_trace(
    labels,
    stack,
    scores: Mapping[int, Mapping[int, float]],
    stop_reasons: Mapping[int, Mapping[str, str]],
    annotated: Mapping[int, Sequence[int]] | None = None,
    ids: Mapping[int, int] | None = None,
) -> dict:
    """The trace of a propagation.

    Parameters
    ----------
    labels : array-like (Z, Y, X) int
        The propagated labels (``VolumeResult.labels``).
    stack : array-like (Z, Y, X) or (Z, Y, X, C), or None
        The images (for contrast and early stops); None leaves them out.
    scores : mapping id -> {slice: predicted IoU}
        ``VolumeResult.scores``.
    stop_reasons : mapping id -> {"up"|"down": reason}
        ``VolumeResult.stop_reasons`` (keys of :data:`napari_sam.volume.STOP_REASONS`).
    annotated : mapping id -> slices, optional
        The slices the user prompted.
    ids : mapping id -> id, optional
        Names to report the objects under (e.g. the committed label ids).

    Returns
    -------
    dict
        ``{"format": 1, "n_slices": Z, "objects": [{"id", "slices", "iou", "area",
        "contrast", "annotated", "stops": {"up"|"down": {"slice", "reason"}}, "flags":
        [{"slice", "kind", "text", "fix"?}]}]}``; lists run over ``slices`` (where the
        object is in ``labels``); ``None`` where a number is unknown. JSON-ready.
    """
    labels = np.asarray(labels)
    annotated = annotated or {}
    objects = []
    present = {int(oid): _present(labels, int(oid)) for oid in stop_reasons}
    reasons = {int(oid): r for oid, r in stop_reasons.items()}
    contrasts = None if stack is None else _contrasts(labels, stack, present, reasons)
    for oid in sorted(stop_reasons):
        if not present[int(oid)]:  # not in the labels (lost): nothing to trace
            continue
        rec = _one_object(int(oid), labels, present[int(oid)], contrasts, scores.get(oid, {}),
                          stop_reasons[oid], annotated.get(oid, ()))
        if not rec["slices"]:
            continue
        if ids is not None:
            rec["id"] = int(ids.get(oid, oid))
        objects.append(rec)
    return {"format": 1, "n_slices": int(labels.shape[0]), "objects": objects}


def automatic_trace(labels, stack, scores: Mapping[int, Mapping[int, float]],
                    found: Mapping) -> dict:
    """The trace of segment everything's propagation of a stack: what ``napari-sam auto``
    writes into its output's sidecar (``extra``) and ``segment_everything(..., trace=True)``
    returns as ``AutomaticResult.trace``.

    Parameters
    ----------
    labels : array-like (Z, Y, X) int
        The final labels (each object under its label value).
    stack : array-like (Z, Y, X) or (Z, Y, X, C), or None
        The images (for contrast and early stops).
    scores : mapping id -> {slice: predicted IoU}
        Each object's per-slice scores (``propagate_objects``'s third result).
    found : mapping
        What :func:`napari_sam.automatic.stack.propagate_objects` put in its ``trace`` dict
        (``{}`` when nothing was propagated).

    Returns
    -------
    dict
        ``{"stop_reasons": {"id": {"up"|"down": reason}}, "trace": ...}``: the ids as strings
        (JSON keys), sorted; ``trace`` is :func:`propagation_trace`'s, each object's seed slice
        (where its largest 2D detection was) as the annotated one. JSON-ready.
    """
    reasons = found.get("stop_reasons", {})
    trace = propagation_trace(labels, stack, scores, reasons, found.get("seeds"))
    return {"stop_reasons": {str(k): v for k, v in sorted(reasons.items())}, "trace": trace}


# ------------------------------------------------------------------------------ rendering
_COLOURS = {"iou": (70, 160, 255), "area": (90, 200, 90), "contrast": (240, 170, 40)}
_FLAG = (235, 60, 60)


def _plot(draw, box, xs, ys, lo, hi, colour, n_slices) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(90, 90, 90))
    pts, zs = [], []
    for z, v in zip(xs, ys):
        if v is None:
            continue
        x = x0 + 4 + (x1 - x0 - 8) * (z / max(1, n_slices - 1))
        t = 0.5 if hi == lo else (v - lo) / (hi - lo)
        pts.append((x, y1 - 4 - (y1 - y0 - 8) * t))
        zs.append(z)
    for a, b in slice_runs(zs):  # no line across slices without a mask
        run = [p for p, z in zip(pts, zs) if a <= z <= b]
        if len(run) > 1:
            draw.line(run, fill=colour, width=2)
    for p in pts:
        draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=colour)


def render_png(trace: Mapping, path, *, title: str = "", width: int = 900) -> None:
    """Draw a trace (:func:`propagation_trace`) as a PNG: one row per object with its
    predicted IoU, area and contrast along the stack, red ticks at flagged slices, and the
    stops and flags written out. Written to a temporary name and renamed."""

    from PIL import Image, ImageDraw

    from napari_sam.io import save_picture

    objects = list(trace.get("objects") or [])
    n = int(trace.get("n_slices") or 1)
    row_h, head = 150, 40
    img = Image.new("RGB", (width, head + row_h * max(1, len(objects))), (24, 24, 28))
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), title or "propagation trace", fill=(230, 230, 230))
    draw.text((width - 330, 10), "IoU (blue)  area (green)  contrast (orange)",
              fill=(200, 200, 200))
    if not objects:
        draw.text((10, head + 10), "no propagated objects", fill=(200, 200, 200))
    pw = (width - 40) // 3
    for r, obj in enumerate(objects):
        y = head + r * row_h
        stops = ", ".join(f"{d} at {s['slice']}: {s['reason']}"
                          for d, s in sorted(obj.get("stops", {}).items()))
        draw.text((10, y), f"object {obj['id']}  slices {obj['slices'][0]}-{obj['slices'][-1]}"
                  f"  ({stops})", fill=(230, 230, 230))
        for i, key in enumerate(("iou", "area", "contrast")):
            vals = [v for v in obj[key] if v is not None]
            lo, hi = (0.0, 1.0) if key == "iou" else (
                (min(vals), max(vals)) if vals else (0.0, 1.0))
            box = (10 + i * (pw + 10), y + 16, 10 + i * (pw + 10) + pw, y + row_h - 30)
            _plot(draw, box, obj["slices"], obj[key], lo, hi, _COLOURS[key], n)
            for f in obj.get("flags", []):
                x = box[0] + 4 + (box[2] - box[0] - 8) * (f["slice"] / max(1, n - 1))
                draw.line((x, box[1], x, box[3]), fill=_FLAG, width=1)
        text = "; ".join(f"slice {f['slice']}: {f['text']}" for f in obj.get("flags", []))
        draw.text((10, y + row_h - 24), (text or "no flags")[:160], fill=(235, 120, 120)
                  if text else (150, 150, 150))
    save_picture(img, Path(path))


def render_pages(trace: Mapping, path, *, title: str = "") -> list[Path]:
    """Draw a trace as one PNG at ``path`` (:func:`render_png`) when it has at most
    :data:`DETAILED_OBJECTS` objects, else as a grid of small panels (each object's IoU, area
    and contrast overlaid, scaled to their own range, with slice ticks and its stops),
    :data:`PAGE_OBJECTS` objects per PNG: ``path``, then ``<stem>-2.png``, ... Removes the
    further pages an earlier report left that this one does not write. Returns the PNGs."""
    path = Path(path)
    objects = list(trace.get("objects") or [])
    if len(objects) <= DETAILED_OBJECTS:
        pages = [path]
        render_png(trace, path, title=title)
    else:
        chunks = [objects[i:i + PAGE_OBJECTS] for i in range(0, len(objects), PAGE_OBJECTS)]
        pages = [_page_path(path, k) for k in range(len(chunks))]
        for k, chunk in enumerate(chunks):
            head = f"{title or 'propagation trace'}  (page {k + 1} of {len(chunks)})"
            _render_grid(trace, chunk, pages[k], head)
    k = len(pages)
    while _page_path(path, k).exists():  # pages of an earlier, longer trace
        _page_path(path, k).unlink()
        k += 1
    return pages


def _page_path(path: Path, k: int) -> Path:
    return path if k == 0 else path.with_name(f"{path.stem}-{k + 1}{path.suffix}")


def stop_summary(trace: Mapping) -> str:
    """How the objects of ``trace`` stopped, counted: "faded 64, edge 29" (ends, both ways)."""
    counts: dict[str, int] = {}
    for obj in trace.get("objects") or []:
        for stop in obj.get("stops", {}).values():
            counts[stop["reason"]] = counts.get(stop["reason"], 0) + 1
    return ", ".join(f"{r} {c}" for r, c in sorted(counts.items(), key=lambda rc: -rc[1]))


def _slice_ticks(n: int) -> list[int]:
    """At most 6 round slice numbers from 0 to ``n - 1``, the last one included."""
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10**9)
                if (n - 1) // s <= 5)
    ticks = list(range(0, n, step))
    if ticks[-1] != n - 1 and (n - 1 - ticks[-1]) * 2 >= step:
        ticks.append(n - 1)
    return ticks


def _render_grid(trace: Mapping, objects: list, path: Path, title: str) -> None:
    """One page of the grid: :data:`GRID_COLUMNS` panels per row, one per object."""
    from PIL import Image, ImageDraw

    from napari_sam.io import save_picture

    n = int(trace.get("n_slices") or 1)
    width, cell_h, head = 1200, 128, 56
    cell_w = (width - 10) // GRID_COLUMNS
    rows = -(-len(objects) // GRID_COLUMNS)
    img = Image.new("RGB", (width, head + rows * cell_h), (24, 24, 28))
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, fill=(230, 230, 230))
    draw.text((10, 24), f"{len(trace.get('objects') or [])} objects; ends: "
              f"{stop_summary(trace) or 'none'}", fill=(200, 200, 200))
    draw.text((10, 40), "each panel: IoU (blue, 0-1), area (green) and contrast (orange) "
              "scaled to their range; red: flagged slices (listed by napari-sam report)",
              fill=(160, 160, 160))
    for i, obj in enumerate(objects):
        x, y = 10 + (i % GRID_COLUMNS) * cell_w, head + (i // GRID_COLUMNS) * cell_h
        _panel(draw, obj, (x, y, x + cell_w - 12, y + cell_h - 6), n)
    save_picture(img, path)


def _panel(draw, obj: Mapping, cell, n: int) -> None:
    x0, y0, x1, y1 = cell
    flags = obj.get("flags", [])
    zs = obj["slices"]
    head = f"object {obj['id']}  slices {describe_slices(zs)}"
    draw.text((x0, y0), head, fill=(230, 230, 230))
    if flags:
        draw.text((x1 - 60, y0), f"{len(flags)} flag{'s' if len(flags) > 1 else ''}",
                  fill=(235, 120, 120))
    stops = obj.get("stops", {})
    ends = ", ".join(f"{d} {stops[d]['reason']} at {stops[d]['slice']}"
                     for d in ("down", "up") if d in stops) or "not propagated"
    draw.text((x0, y0 + 13), ends, fill=(200, 200, 200))
    box = (x0, y0 + 28, x1, y1 - 16)
    for key in ("area", "contrast", "iou"):
        vals = [v for v in obj[key] if v is not None]
        lo, hi = (0.0, 1.0) if key == "iou" else ((min(vals), max(vals)) if vals else (0, 1))
        _plot(draw, box, zs, obj[key], lo, hi, _COLOURS[key], n)
    for f in flags:
        fx = box[0] + 4 + (box[2] - box[0] - 8) * (f["slice"] / max(1, n - 1))
        draw.line((fx, box[1], fx, box[3]), fill=_FLAG, width=1)
    for z in _slice_ticks(n):
        tx = box[0] + 4 + (box[2] - box[0] - 8) * (z / max(1, n - 1))
        draw.line((tx, box[3], tx, box[3] + 3), fill=(150, 150, 150))
        draw.text((tx - 3 * len(str(z)), box[3] + 4), str(z), fill=(150, 150, 150))


def _sidecars(paths) -> list[Path]:
    from napari_sam import io as nio

    found = []
    for spec in paths:
        p = Path(spec)
        if p.is_dir() and not nio.output_metadata_path(p).is_file():  # a folder of outputs
            found.extend(sorted(q for q in p.glob("*.json") if not q.name.startswith(".")))
        elif p.suffix.lower() == ".json":
            found.append(p)
        else:
            found.append(nio.output_metadata_path(p))
    return found


def report(paths, *, out=None, quiet: bool = False) -> list[Path]:
    """Render the trace of every ``segment`` or ``auto`` output among ``paths`` (folders,
    label files or sidecars) as ``<output>.trace.png`` beside it (and ``.trace-2.png``, ...
    for many objects: :func:`render_pages`); print each PNG's path and, unless ``quiet``,
    how the objects ended (counted) and each flag. Returns the PNGs written."""
    import json
    import sys

    from napari_sam import io as nio

    out = out or sys.stdout
    written = []
    for side in _sidecars(paths):
        try:
            record = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("format") != nio.OUTPUT_METADATA_FORMAT:
            continue
        output = side.with_name(side.name[: -len(".json")])
        source = (record.get("input") or {}).get("path") or ""
        title = f"{Path(source).name or output.name}: {output.name}"
        for trace, png, name in _traces_of(record, output, title):
            written.extend(_report_one(trace, png, name, out, quiet))
    return written


def _traces_of(record: dict, output: Path, title: str) -> list[tuple[dict, Path, str]]:
    """``(trace, png path, title)`` of an output's sidecar ``record``: its trace, or for a
    movie of volumes (``TZYX``) each time point's, as ``<output>.t3.trace.png``."""
    extra = record.get("extra") or {}
    if extra.get("trace"):
        return [(extra["trace"], output.with_name(output.name + ".trace.png"), title)]
    parts = (extra.get("time_lapse") or {}).get("per_time_point") or ()
    return [(p["trace"], output.with_name(f"{output.name}.t{p['t']}.trace.png"),
             f"{title}, time point {p['t']}") for p in parts if p.get("trace")]


def _report_one(trace: dict, png: Path, title: str, out, quiet: bool) -> list[Path]:
    """Render one trace into ``png`` (and its pages) and print what :func:`report` says."""
    pages = render_pages(trace, png, title=title)
    for page in pages:
        print(page, file=out)
    if not quiet:
        summary = stop_summary(trace)
        if summary:
            print(f"  {len(trace.get('objects') or [])} objects; ends: {summary}", file=out)
        for obj in trace.get("objects", []):
            for f in obj.get("flags", []):
                print(f"  object {obj['id']}, slice {f['slice']}: {f['text']}", file=out)
    return pages


def slice_runs(slices) -> list[tuple[int, int]]:
    """Runs of consecutive slices, ``[(first, last), ...]``, of the sorted ``slices``."""
    runs: list[tuple[int, int]] = []
    for z in sorted(int(v) for v in slices):
        if runs and z == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], z)
        else:
            runs.append((z, z))
    return runs


def describe_slices(slices, noun: bool = False) -> str:
    """``slices`` in words: "3-9", or "0-6 and 10-15" where the object has no mask between;
    with ``noun``: "slice 3", "slices 3-9"."""
    runs = [f"{a}-{b}" if a != b else f"{a}" for a, b in slice_runs(slices)]
    text = " and ".join(runs) if len(runs) < 3 else ", ".join(runs[:-1]) + " and " + runs[-1]
    return f"slice {text}" if noun and text.isdigit() else f"slices {text}" if noun else text

