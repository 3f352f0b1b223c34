"""``napari-sam sample``: seeded synthetic images and stacks with their ground truth, as TIFF."""

from __future__ import annotations

import os
from pathlib import Path

from napari_sam.cli.arguments import Formatter, nonneg_int, positive_int, shape_arg, user_path
from napari_sam.cli.errors import CLIError

#: Sample stacks for ``napari-sam sample``: name -> (synthetic generator, default shape).
SAMPLES = {
    "nuclei-3d": ("nuclei_3d", (32, 128, 128)),
    "nuclei-2d": ("nuclei_2d", (256, 256)),
    "cells-3d": ("cells_membrane_3d", (32, 128, 128)),
    "cells-2d": ("cells_membrane_2d", (256, 256)),
    "em-3d": ("em_3d", (32, 128, 128)),
    "em-2d": ("em_organelles_2d", (256, 256)),
    "xray-3d": ("xray_3d", (32, 128, 128)),
    "xray-2d": ("xray_2d", (256, 256)),
    "underwater": ("underwater_rgb", (256, 256)),
}


EPILOG_SAMPLE = """\
examples:
  napari-sam sample nuclei-3d -o data/
  napari-sam sample em-3d xray-3d -o data/ -n 3 --shape 48,160,160

Writes <out>/<name>_seed<seed>.tif and the ground truth <out>/ground_truth/<same name>;
for 3D samples also <out>/prompts.csv, one click per ground-truth object, for `segment`:
  napari-sam sample nuclei-3d -o data/
  napari-sam segment data/ -o seg/ --prompts data/prompts.csv
Samples: """ + ", ".join(SAMPLES) + "."

#: The prompts file ``sample`` writes beside 3D samples, and its header (the CSV of
#: ``segment --prompts``).
PROMPTS_CSV = "prompts.csv"
PROMPTS_HEADER = "file,id,slice,row,col"


def add_sample_parser(sub) -> None:
    """``napari-sam sample NAME... -o DIR``."""
    ps = sub.add_parser("sample", help="write synthetic sample stacks (TIFF) with ground truth",
                        description="Write seeded synthetic images or stacks with their "
                                    "ground-truth labels, for trying the tools on a fresh machine.",
                        formatter_class=Formatter, epilog=EPILOG_SAMPLE)
    ps.add_argument("names", nargs="+", metavar="NAME", choices=list(SAMPLES),
                    help="sample kind: " + ", ".join(SAMPLES))
    ps.add_argument("-o", "--output", required=True, metavar="DIR", type=user_path,
                    help="output folder")
    ps.add_argument("-n", "--count", type=positive_int, default=1, metavar="N",
                    help="files per sample kind (default: 1)")
    ps.add_argument("--seed", type=nonneg_int, default=10_000,
                    help="seed of the first file; file i uses seed + i (default: 10000, "
                         "outside the demo model's training seeds)")
    ps.add_argument("--shape", type=shape_arg, metavar="Z,Y,X",
                    help="image shape, e.g. 32,128,128 (default depends on the sample)")
    ps.add_argument("--dtype", choices=("uint8", "uint16"), help="image dtype")
    ps.add_argument("--no-ground-truth", action="store_true",
                    help="do not write <out>/ground_truth/")
    ps.add_argument("--overwrite", action="store_true", help="replace existing files")
    ps.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")


def cmd_sample(args) -> int:
    """Write the sample files; returns the exit code."""
    import numpy as np

    from napari_sam import io as nio
    from napari_sam import synthetic

    out = Path(args.output)
    written = kept = 0
    clicks: dict[str, list] = {}  # 3D sample file written now -> its objects' clicks
    kept_clicks: dict[str, list] = {}  # ... kept (its rows already there are left as they are)
    shapes = {name: sample_shape(name, args.shape) for name in dict.fromkeys(args.names)}
    for name, shape in shapes.items():
        func = getattr(synthetic, SAMPLES[name][0])
        for i in range(args.count):
            seed = args.seed + i
            fname = f"{name}_seed{seed}.tif"
            img_path = out / fname
            gt_path = out / "ground_truth" / fname
            if img_path.exists() and not args.overwrite and (
                    args.no_ground_truth or gt_path.exists()):
                kept += 1
                if not args.quiet:
                    print(f"kept     {img_path} (exists; --overwrite to regenerate)")
                if len(shape) == 3 and gt_path.is_file():
                    import tifffile

                    kept_clicks[fname] = object_clicks(tifffile.imread(gt_path))
                continue
            kwargs = {"seed": seed}
            if args.dtype and name != "underwater":
                kwargs["dtype"] = args.dtype
            s = func(tuple(shape), **kwargs)
            spacing = None
            if s.labels.ndim == 3:
                spacing = (float(s.meta.get("anisotropy", 1.0)), 1.0, 1.0)
            axes = {2: "YX", 3: "ZYX"}[s.labels.ndim] + ("C" if s.image.ndim > s.labels.ndim else "")
            write_image(img_path, s.image, axes, spacing, {"sample": name, "seed": seed},
                         overwrite=True)
            if not args.no_ground_truth:
                nio.write_labels(gt_path, np.asarray(s.labels), axes=axes.replace("C", ""),
                                 pixel_size=spacing if spacing else None,
                                 metadata={"sample": name, "seed": seed, "ground_truth": True},
                                 overwrite=True)
            written += 1
            if s.labels.ndim == 3:
                clicks[fname] = object_clicks(s.labels)
            if not args.quiet:
                print(f"wrote    {img_path} {tuple(s.image.shape)} {s.image.dtype}, "
                      f"{s.n_objects} objects" + ("" if args.no_ground_truth else f" (+ {gt_path})"))
    if clicks or kept_clicks:
        write_prompts_csv(out, clicks, kept_clicks, overwrite=args.overwrite, quiet=args.quiet)
    return 0


def object_clicks(labels) -> list[tuple[int, int, int, int]]:
    """One click per object of a ``(Z, Y, X)`` label volume, ``(id, slice, row, col)``: on the
    slice where the object is largest, at its deepest pixel (the farthest from its edge)."""
    import numpy as np
    from scipy import ndimage

    labels = np.asarray(labels)
    clicks = []
    for oid, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        sub = labels[box] == oid
        z = int(np.argmax(sub.reshape(sub.shape[0], -1).sum(axis=1)))
        depth = ndimage.distance_transform_edt(np.pad(sub[z], 1))  # the crop's edge is outside
        r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
        clicks.append((oid, box[0].start + z, box[1].start + int(r) - 1,
                       box[2].start + int(c) - 1))
    return clicks


def write_prompts_csv(out: Path, clicks: dict, kept_clicks: dict | None = None, *,
                      overwrite: bool, quiet: bool) -> None:
    """Write ``<out>/prompts.csv`` (atomically): the clicks of the sample files written by
    this run (``clicks``, replacing their rows), the rows already there for other files
    (a user's edits of a kept sample's clicks stay), and the clicks of kept samples that have
    no row yet (``kept_clicks``). A ``prompts.csv`` that ``sample`` did not write is kept
    unless ``overwrite``."""
    from napari_sam.io import write_text_atomic

    path = out / PROMPTS_CSV
    rows = []
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines[:1] != [PROMPTS_HEADER] and not overwrite:
            if not quiet:
                print(f"kept     {path} (not written by napari-sam sample; --overwrite to "
                      "replace it)")
            return
        if lines[:1] == [PROMPTS_HEADER]:
            rows = [ln for ln in lines[1:] if ln and ln.split(",", 1)[0] not in clicks]
    listed = {ln.split(",", 1)[0] for ln in rows}
    fresh = {**{k: v for k, v in (kept_clicks or {}).items() if k not in listed}, **clicks}
    if not fresh:
        return  # nothing new: the file stays as it is (edits included)
    rows += [f"{name},{oid},{z},{r},{c}" for name, objs in fresh.items()
             for oid, z, r, c in objs]
    write_text_atomic(path, "\n".join([PROMPTS_HEADER, *rows]) + "\n")
    if not quiet:
        n = sum(len(v) for v in fresh.values())
        print(f"wrote    {path} ({n} clicks, one per ground-truth object on its largest slice: "
              f"napari-sam segment {out}/ -o seg/ --prompts {path})")


def sample_shape(name: str, shape) -> tuple[int, ...]:
    """The shape to generate sample ``name`` with: ``shape`` (from ``--shape``) or the
    sample's default.

    Raises
    ------
    CLIError
        Exit code 2, when ``shape`` has the wrong number of sizes or is too small.
    """
    from napari_sam.synthetic.sample import check_shape

    default_shape = SAMPLES[name][1]
    shape = tuple(shape or default_shape)
    want = len(default_shape)
    dims = "Z,Y,X" if want == 3 else "Y,X"
    if len(shape) != want:
        raise CLIError(f"--shape for {name} needs {want} sizes ({dims}), got {len(shape)}", 2)
    try:
        check_shape(shape, want)
    except ValueError:
        need = "Y and X of at least 32" + (" and Z of at least 4" if want == 3 else "")
        raise CLIError(f"--shape {','.join(map(str, shape))} is too small for {name}: give "
                       f"{need} ({dims}, e.g. {','.join(map(str, default_shape))})", 2) from None
    return shape


def write_image(path: Path, image, axes: str, spacing, info: dict, *, overwrite: bool) -> None:
    """Write an image TIFF (ImageJ hyperstack) atomically and durably, as
    :mod:`napari_sam.io.writers` writes (a temporary name, flushed to disk, renamed): a crash
    leaves the whole sample or none, never a truncated one beside its ground truth."""
    import json

    import tifffile

    from napari_sam.io import fsync_path, remove_path, tmp_name
    from napari_sam.io.write_errors import naming_output

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    md = {"axes": axes, "Info": json.dumps({"napari_sam": info})}
    kwargs = {}
    if spacing:
        md.update(unit="micron", spacing=spacing[0])
        kwargs["resolution"] = (1.0 / spacing[2], 1.0 / spacing[1])
    rgb = axes.endswith("C")
    try:
        tifffile.imwrite(tmp, image, imagej=not rgb, photometric="rgb" if rgb else "minisblack",
                         metadata=md if not rgb else {"axes": axes}, compression="zlib",
                         **kwargs)
        fsync_path(tmp)  # (renamed unflushed, a crash could leave it empty or truncated)
        os.replace(tmp, path)
    except BaseException as exc:
        remove_path(tmp)  # (a missing file on a read-only disk: not its EROFS)
        naming_output(exc, path, tmp)
        raise
