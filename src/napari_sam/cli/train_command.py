"""``napari-sam train``: train or finetune a model on images with instance labels."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import time
from pathlib import Path

from napari_sam.cli.arguments import (
    Formatter,
    add_common,
    axes_arg,
    nonneg_int,
    number_type,
    positive_float,
    positive_int,
    user_path,
)
from napari_sam.cli.errors import CLIError, print_note
from napari_sam.cli.interruption import INTERRUPTED
from napari_sam.cli.models_command import resolve_model
from napari_sam.words import counted, for_count

EPILOG_TRAIN = """\
examples:
  napari-sam sample nuclei-2d -o train/ -n 20
  napari-sam train train/ train/ground_truth/ -o my_model.pt --epochs 5
  napari-sam train "train/*.tif" --labels "train/ground_truth/*.tif" -o my_model.pt
  napari-sam auto "data/*.tif" -o out/ --model my_model.pt

IMAGES and LABELS are paired by name (img.tif with img_labels.tif or ground_truth/img.tif;
in sorted order where no label file is named after an image): the same number of files,
same shapes. A
folder or glob given as both (train d/ d/) pairs the images with the label files beside
them: session label TIFFs, the *_labels.tif written by auto.
The checkpoint (and FILE.json: architecture, data, metrics) is written atomically after
each improving epoch; Ctrl-C keeps the last good one.
"""


#: ``--val-fraction``: a share in [0, 1) (1 would hold every image out of training).
val_fraction_arg = number_type(
    float, lambda v: 0.0 <= v < 1.0,
    "a number from 0 to below 1 (the share of the images held out for validation; 0 holds "
    "none out, 1 would leave none to train on)")


def add_train_parser(sub) -> None:
    """``napari-sam train IMAGES LABELS -o FILE.pt``."""
    pt = sub.add_parser("train", help="train or finetune a model on images with labels",
                        description="Train or finetune a SAM-family model on images with "
                                    "instance labels (simulated point and box prompts).",
                        formatter_class=Formatter, epilog=EPILOG_TRAIN)
    pt.add_argument("images", metavar="IMAGES", help="image files, a directory or a quoted glob")
    pt.add_argument("labels", metavar="LABELS", nargs="?",
                    help="label files, a directory or a quoted glob (or --labels LABELS)")
    pt.add_argument("--labels", dest="labels_opt", metavar="LABELS",
                    help="the same as the LABELS argument, as an option")
    pt.add_argument("-o", "--output", required=True, metavar="FILE.pt", type=user_path,
                    help="checkpoint to write (plus its checkpoint metadata FILE.json)")
    g = pt.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=10, metavar="N",
                   help="passes over the training images (default: 10)")
    g.add_argument("--lr", type=positive_float, default=1e-4, metavar="F",
                   help="learning rate (default: 1e-4)")
    g.add_argument("--batch-size", type=positive_int, default=2, metavar="N",
                   help="images per step (default: 2)")
    g.add_argument("--steps-per-epoch", type=positive_int, default=None, metavar="N",
                   help="steps per epoch (default: every training image once)")
    g.add_argument("--objects-per-image", type=positive_int, default=8, metavar="N",
                   help="objects prompted per image and step (default: 8)")
    g.add_argument("--freeze-encoder", action="store_true",
                   help="train the prompt encoder and mask decoder only")
    g.add_argument("--val-fraction", type=val_fraction_arg, default=0.2, metavar="F",
                   help="share of the images held out to validate on, 0 to < 1 (default: 0.2)")
    g.add_argument("--seed", type=nonneg_int, default=0,
                   help="data order, prompts and validation split (default: 0)")
    g.add_argument("--axes", type=axes_arg, metavar="AXES", help=argparse.SUPPRESS)
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing checkpoint; start over beside the training state "
                        "of a resumable run (it is removed; not with --resume)")
    g.add_argument("--resume", action="store_true",
                   help="write FILE.train-state.pt beside -o after every epoch and when stopped "
                        "(SIGTERM from timeout, Ctrl-C); the same command continues from it, so "
                        "one schedule can run in pieces")
    g.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                   help="with --resume: stop this piece after N training steps")
    g.add_argument("--minutes", type=positive_float, default=None, metavar="M",
                   help="with --resume: stop this piece after M minutes")
    g.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads of this process (default: from the cores free now; also "
                        "NAPARI_SAM_THREADS)")
    add_common(pt)


def cmd_train(args) -> int:
    """Train; returns the exit code (130 when interrupted)."""
    if args.labels is None and args.labels_opt is None:
        raise CLIError("no LABELS given: name the label files after IMAGES: `napari-sam train "
                       "IMAGES LABELS -o FILE.pt` (or --labels LABELS); the same folder twice "
                       "(`train d/ d/`) pairs the images with the label files beside them", 2)
    if args.labels is not None and args.labels_opt is not None:
        raise CLIError(f"LABELS given twice ({args.labels} and --labels {args.labels_opt}): "
                       "give the label files once, as the second argument or as --labels", 2)
    labels_spec = args.labels if args.labels is not None else args.labels_opt
    out = checkpoint_path(args.output)
    start = Path(args.model).expanduser() if args.model else None
    if start is not None and start.is_file() and out.exists() and start.samefile(out):
        raise CLIError(f"-o {out} is the checkpoint training starts from (--model): writing "
                       "over it would lose the weights it starts from; write the finetuned "
                       f"model to another file (e.g. -o {out.with_stem(out.stem + '_ft')})", 2)
    from napari_sam.training.output_lock import TrainingOutputBusy, holding_output

    try:
        with holding_output(out):  # before any check reads out's files: one run at a time
            return _train_into(args, out, labels_spec)
    except TrainingOutputBusy as exc:
        raise CLIError(str(exc), 2) from None


def _train_into(args, out: Path, labels_spec: str) -> int:
    """The rest of :func:`cmd_train`, holding ``out``'s lock: the checks of ``out`` and its
    training state, the data and model, then training and what it says."""
    check_pieces(args, out)  # (after: the start model is no training run's output either)
    from napari_sam.training.checkpoint import training_state_path

    if out.exists() and not (args.overwrite or args.resume):
        raise CLIError(f"{out} already exists; pass --overwrite to replace it or choose another "
                       "-o", 2)
    if out.exists() and args.resume and not args.overwrite and not (
            training_state_path(out).exists()):
        raise CLIError(f"{out} already exists and there is no training state beside it "
                       f"({training_state_path(out).name}) to continue: --resume would train "
                       "it again from the start over it; pass --overwrite for that, or choose "
                       "another -o", 2)
    check_output(out, overwrite=args.overwrite, resume=args.resume)
    if args.threads is not None:
        from napari_sam.device import configure_threads

        configure_threads(threads=args.threads)
    images, labels = collect_pairs(args.images, labels_spec, quiet=args.quiet)
    model = resolve_model(args.model, quiet=args.quiet)
    from napari_sam.device import resolve_device

    try:
        resolve_device(args.device, auto_hint="--device auto")
    except ValueError as exc:
        raise CLIError(f"--device: {exc}", 2) from None
    from napari_sam.training import train
    from napari_sam.training.movies import trained_on_words

    if not args.quiet:
        print_note(f"training on {trained_on_words(images, labels)} from {model!r} -> {out}")
    t0 = time.perf_counter()
    with signals_received() as signals:
        result = _train(train, args, images, labels, model, out)
    if result.already_complete:
        return _already_complete(args, out, len(result.history))
    if args.resume and not result.complete and not result.epochs_done_now:
        message = _piece_message(result, out, args.epochs, time.perf_counter() - t0)
    else:
        message = written_message(result, args.epochs, time.perf_counter() - t0)
    print(message)
    if result.path:
        import shlex

        shown = shlex.quote(str(args.images or "data/*.tif"))  # what it was trained on
        lead = ("or try it" if "no epoch beat it" in message else "use it")
        print(f"{lead}: napari-sam auto {shown} -o out/ --model {result.path}")
    stopped = not result.complete and (
        result.interrupted or {signal.SIGTERM, signal.SIGINT} & signals)
    if args.resume and not result.complete:
        if stopped:  # a signal, not --max-steps/--minutes: interrupted, as Ctrl-C always is
            from napari_sam.training.checkpoint import training_state_path

            state = training_state_path(out)
            print("Interrupted (SIGTERM or Ctrl-C): " + (
                f"the training state is in {state}; run the same command again to continue"
                + ("" if result.state_saved else " (from where it was last saved: this "
                   "piece stopped during a step)")
                if state.exists() else "no training state was saved yet; run the same command "
                "again to start the schedule over"))
            return INTERRUPTED
        print("stopped before the end of the schedule; run the same command again to continue")
        return 0
    if result.interrupted:
        print("Interrupted: the checkpoint on disk is the last good one.")
        return INTERRUPTED
    return 0 if result.path else 1


def check_pieces(args, out: Path) -> None:
    """Refuse (CLIError, exit 2) ``--resume --overwrite`` beside the training state of a
    resumable run of ``out`` (continue it or start over?), and a run without ``--resume`` that
    would not do what its user means: one beside that state (without ``--overwrite``: a rerun
    that left out ``--resume``, with ``--minutes`` or not, would train from the start beside
    it, or be told to overwrite it), or one with ``--max-steps`` or ``--minutes``, which stop
    a piece of a resumable run. The message names the fix. First of all, an ``out`` (or its
    ``FILE.json``) that no training run wrote: never replaced, not even with ``--overwrite``
    (:func:`napari_sam.training.checkpoint.not_ours_problem`); before that, a save of ``out``
    killed between its two renames is completed (a note says so)."""
    from napari_sam.training.checkpoint import (
        finish_interrupted_save,
        not_ours_problem,
        training_state_path,
    )

    if finish_interrupted_save(out) and not args.quiet:
        print_note(f"note: completed the interrupted save of {out} (the last run stopped "
                   "after writing its metadata, before renaming the checkpoint into place)")
    if not_ours_problem(out):
        raise CLIError(not_ours_problem(out), 2)
    state = training_state_path(out)
    if args.resume and args.overwrite and state.exists():
        raise CLIError(f"--resume and --overwrite contradict each other beside {state}: "
                       "--resume continues that run (with its options), --overwrite trains "
                       f"from the start (it removes the state and replaces -o {out}); give "
                       "one", 2)
    if args.resume:
        return
    if state.exists() and not args.overwrite:
        raise CLIError(f"{state} is the training state of a resumable run of -o {out}: add "
                       "--resume to continue that run (with its options), or pass "
                       "--overwrite to train from the start (it removes the state)", 2)
    given = [o for o, v in (("--max-steps", args.max_steps), ("--minutes", args.minutes)) if v]
    if given:
        raise CLIError(f"{' and '.join(given)} {for_count(len(given), 'stops', 'stop')} a "
                       f"piece of a resumable run: add --resume (each piece saves {state.name} "
                       "beside -o, and the same command with --resume continues from it)", 2)


def checkpoint_path(text: str) -> Path:
    """The checkpoint ``-o`` names, or CLIError (exit code 2) for an empty ``-o``, a folder
    (an existing one, or a name ending in ``/``) or a name not ending in ``.pt``/``.pth``."""
    if not text.strip():
        raise CLIError("-o is empty; give the checkpoint file to write, e.g. -o my_model.pt", 2)
    out = Path(text)
    if out.is_dir():
        raise CLIError(f"-o {out} is a folder; give the checkpoint file to write, e.g. "
                       f"-o {out / 'my_model.pt'}", 2)
    if text.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep)):
        raise CLIError(f"-o {text} is a folder (the name ends in {text[-1]}); give the "
                       f"checkpoint file to write, e.g. -o {out / 'my_model.pt'} (the folder "
                       "is created)", 2)
    if out.suffix.lower() not in (".pt", ".pth"):
        raise CLIError(f"-o {out}: the checkpoint name must end in .pt or .pth, e.g. "
                       f"-o {out.with_name(out.name + '.pt')}", 2)
    return out


#: ``<session>.base-<hash>.tif``: what a session's labels layer held before its first commit.
_SESSION_BASE = re.compile(r"(?P<session>.+)\.base-[0-9a-f]{12}\.tif")


def _replaced_bases(labels: list[Path]) -> set[Path]:
    """The session base TIFFs among ``labels`` whose session's labels TIFF is there too (the
    labels after the session's commits: the ones to train on)."""
    from napari_sam.batch.inputs import is_session_labels

    have = {(p.parent, p.name.split(".labels-")[0]) for p in labels if ".labels-" in p.name}
    return {p for p in labels if (m := _SESSION_BASE.fullmatch(p.name))
            and (p.parent, m["session"]) in have and is_session_labels(p)}


def _collect(spec: str, what: str) -> list[Path]:
    """The files of IMAGES or LABELS (``what``) (:func:`napari_sam.batch.collect_inputs`),
    or CLIError (exit code 2) naming the side: ``train`` has no ``--recursive``, so a folder
    whose files are all in subfolders is answered with the folder or glob to give instead."""
    from napari_sam.batch import BatchError, collect_inputs
    from napari_sam.batch.inputs import IMAGE_SUFFIXES

    labels = what == "LABELS"
    try:
        return collect_inputs([spec], labels=labels)
    except BatchError as exc:
        from napari_sam import io as nio

        folder = Path(os.path.expanduser(spec))
        store = nio.is_zarr_path(folder) or folder.suffix.lower() == ".zarr"
        if not folder.is_dir() or store or any(not f.name.startswith(".") and f.name.lower(
                ).endswith(IMAGE_SUFFIXES) for f in folder.iterdir()):
            raise CLIError(f"{what}: {exc}", 2) from None
        try:
            below = collect_inputs([folder], recursive=True, labels=labels)
        except BatchError:
            below = []
        where = (f"; its subfolders hold {len(below)} (e.g. {below[0]}), which are not "
                 f"searched: give that folder ({below[0].parent}{os.sep}) or a quoted glob "
                 f"(\"{folder / '**' / '*.tif'}\")" if below else "")
        raise CLIError(f"{what}: the folder {spec} holds no {'label files' if labels else 'images'}"
                       f" ({', '.join(IMAGE_SUFFIXES)}){where}", 2) from None


def collect_pairs(images_spec: str, labels_spec: str, *, quiet: bool = False
                  ) -> tuple[list[Path], list[Path]]:
    """The image files and label files of ``train IMAGES LABELS``, paired by name
    (:func:`napari_sam.training.data.label_order`: ``img.tif`` with ``img_labels.tif`` or
    ``ground_truth/img.tif``), in sorted order where the names tell nothing.

    IMAGES leave out session label TIFFs and napari-sam outputs
    (:func:`napari_sam.batch.collect_inputs`); LABELS leave out the files IMAGES selected and
    the base TIFF of a session whose labels TIFF is there too, so that a folder or glob given
    as both (``train d/ d/``) pairs each image with the label files beside it.

    Raises
    ------
    CLIError
        Exit code 2: nothing but the images in LABELS, or not one label file per image (the
        files without a partner named), or label files named after the images only in part.
    """
    images = _collect(images_spec, "IMAGES")
    stems = {p: p.name.split(".")[0] for p in images}
    named = [p for p, st in stems.items()
             if st.endswith("_labels") and st[: -len("_labels")] in stems.values()]
    if named:  # img_labels.tif beside img.tif: labels saved by hand (napari's writer, no
        images = [p for p in images if p not in named]  # sidecar), not an image
        if not quiet:
            print_note(f"note: IMAGES: left out {counted(len(named), 'file')} named after an "
                       f"image with _labels (label images, e.g. {named[0].name})")
    images = _images_without_label_images(images, images_spec, quiet=quiet)
    found = _collect(labels_spec, "LABELS")
    taken = {p.resolve() for p in images}
    same = [p for p in found if p.resolve() in taken]
    labels = [p for p in found if p.resolve() not in taken]
    if not labels:
        raise CLIError(f"IMAGES and LABELS select the same files, e.g. {same[0]}, and LABELS "
                       "holds nothing else; point LABELS at the label files (e.g. "
                       "ground_truth/, the session label TIFFs or the output folder of auto)",
                       2)
    replaced = _replaced_bases(labels)
    labels = [p for p in labels if p not in replaced]
    if same and not quiet:
        print_note(f"note: LABELS: left out {counted(len(same), 'file')} IMAGES selected (e.g. "
                   f"{same[0]}); {counted(len(labels), 'label file')} "
                   f"{for_count(len(labels), 'remains', 'remain')}")
    return _pair(images, labels, quiet=quiet)


def _images_without_label_images(images: list[Path], spec: str, *, quiet: bool
                                 ) -> list[Path]:
    """``images`` without the label images a folder or glob of IMAGES found
    (:func:`napari_sam.batch.label_inputs.leave_out_label_images`, as ``auto`` leaves them
    out): in ``train d/ d/`` or ``train d/ d/labels.tif`` the folder ``d/`` holds both the
    image and its labels. A file named as IMAGES is kept; so is everything when nothing else
    is left (the error about the pairing then names the files)."""
    from napari_sam.batch.label_inputs import leave_out_label_images

    kept, left = leave_out_label_images([(p, None) for p in images], [spec])
    if not kept or not left:
        return images
    if not quiet:
        print_note(f"note: IMAGES: left out {counted(len(left), 'label image')} (e.g. "
                   f"{left[0][0]}: {left[0][1]}); they are not trained on as images")
    return [p for p, _ in kept]


def _pair(images: list[Path], labels: list[Path], *, quiet: bool
          ) -> tuple[list[Path], list[Path]]:
    """``images`` and one label file each: session label TIFFs with the image their session
    file names (:func:`napari_sam.training.label_files.choose_label_files`, which leaves out
    those of an image with a label file named after it, and all but the newest session's),
    the other files by name (:func:`napari_sam.training.data.label_order`) or in sorted
    order; CLIError (exit code 2) where they do not match one to one."""
    from napari_sam.training.data import TrainingDataError, label_order, unpaired_files
    from napari_sam.training.label_files import choose_label_files

    choice = choose_label_files(images, labels)
    for line in choice.notes if not quiet else ():
        print_note(f"note: {line}")
    for line in choice.chosen:  # said even with -q: other labels than meant train wrong
        print_note(f"note: {line}")
    labels = choice.labels
    fixed = {im: lab for lab, im in choice.images.items()}
    rest_images = [p for p in images if p not in fixed]
    rest_labels = [p for p in labels if p not in choice.images]
    if len(images) != len(labels):
        advice = ("give a label file for every image, or leave the images without labels "
                  "out of IMAGES" if len(images) > len(labels) else "give one label file per "
                  "image: leave the others out of LABELS (give the label files by name or as "
                  "a glob)")
        raise CLIError(
            f"{counted(len(images), 'image file')} but {counted(len(labels), 'label file')}: "
            f"{unpaired_files([str(p) for p in rest_images], [str(p) for p in rest_labels])}"
            "; IMAGES and LABELS are paired by name (or in sorted order where the names tell "
            f"nothing) and must match one to one: {advice}", 2)
    try:
        order = label_order([str(p) for p in rest_images], [str(p) for p in rest_labels])
    except TrainingDataError as exc:
        raise CLIError(str(exc), 2) from None
    if order is None and len(rest_images) > 1:  # said even with -q: a wrong pairing trains wrong
        shown = ", ".join(f"{i.name} + {lab.name}"
                          for i, lab in zip(rest_images[:4], rest_labels[:4]))
        more = f" and {len(rest_images) - 4} more" if len(rest_images) > 4 else ""
        print_note(f"note: no label file is named after an image, so they are paired in sorted "
                   f"order: {shown}{more}; name each label file after its image (img.tif + "
                   "img_labels.tif, or ground_truth/img.tif) if that is not right")
    paired = dict(zip(rest_images, rest_labels if order is None
                      else [rest_labels[i] for i in order]))
    return images, [fixed.get(im) or paired[im] for im in images]


def check_output(out: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse (CLIError, exit 2) before any work an ``-o`` that cannot be written or whose
    checkpoint metadata ``FILE.json`` would replace a file not written by a training run.

    ``FILE.json`` may be replaced with ``--overwrite``, and with ``--resume`` when it is the
    metadata of an earlier training run (a resumed run rewrites its own). The folder of
    ``-o`` (or its nearest existing parent, when it is created) must be a writable folder.
    """
    from napari_sam.training.checkpoint import checkpoint_metadata_path, is_training_metadata

    meta = checkpoint_metadata_path(out)
    if meta.exists() and not overwrite and not (resume and is_training_metadata(meta)):
        raise CLIError(
            f"{meta} already exists and the checkpoint metadata of -o {out} is written there"
            + ("" if not resume else " (it is not the metadata of an earlier training run)")
            + "; pass --overwrite to replace it or choose another -o", 2)
    parent = out.parent if str(out.parent) else Path(".")
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"-o {out}: {existing} is a file, not a folder; choose another -o", 2)
    if existing != parent:  # the folders are created when the checkpoint is written
        if not os.access(existing, os.W_OK | os.X_OK):
            raise CLIError(f"-o {out}: cannot create the folder {parent} ({existing} is not "
                           "writable); choose another -o", 2)
        return
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".napari-sam-write-test-"):
            pass
    except OSError as exc:
        raise CLIError(f"-o {out}: cannot write in {parent} ({exc.strerror or exc}); choose "
                       "another -o", 2) from None


def _train(train, args, images, labels, model: str, out: Path):
    """Call :func:`napari_sam.train` with the command's options (CLIError, exit code 2, for a
    resume of another schedule, training data or a model that cannot be used)."""
    from napari_sam.training.data import TrainingDataError
    from napari_sam.training.run import ModelLoadError, ScheduleMismatchError

    try:
        return train(
            [str(p) for p in images], [str(p) for p in labels], model=model, out=out,
            epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
            objects_per_image=args.objects_per_image, freeze_encoder=args.freeze_encoder,
            val_fraction=args.val_fraction, seed=args.seed, device=args.device,
            precision=args.precision, steps_per_epoch=args.steps_per_epoch,
            progress=not args.quiet, resume=args.resume, max_steps=args.max_steps,
            time_limit=None if args.minutes is None else 60 * args.minutes,
            on_note=lambda note: print_note(f"note: {note}"), overwrite=args.overwrite,
            on_resume=None if args.quiet else lambda state: print_note(
                f"continuing the run saved in {state} (its progress bar starts where it "
                "stopped)"),
        )
    except (ScheduleMismatchError, TrainingDataError) as exc:
        # another command than the one that wrote the state; images or labels that cannot
        # be trained on: both found before any training
        raise CLIError(str(exc), 2) from None
    except ModelLoadError as exc:
        raise CLIError(f"--model {args.model}: cannot load it as a model to train from: "
                       f"{str(exc).rstrip('.')}; give a SAM 1 checkpoint (.pt/.pth, e.g. from "
                       "`napari-sam train`) or a name from `napari-sam models`", 2) from None


def _score(rec: dict) -> tuple[str, float | None]:
    """The IoU an epoch was judged by: validation IoU, or training IoU without a split."""
    if rec.get("val_iou") is not None:
        if rec.get("val_on_training_data"):
            return "validation IoU on the training data", rec["val_iou"]
        return "validation IoU", rec["val_iou"]
    return "training IoU", rec.get("train_iou")


def written_message(result, epochs: int, seconds: float) -> str:
    """What the run wrote: which epoch's weights the checkpoint holds (the best one, from its
    metadata's ``best_epoch``) and their IoU, and the last epoch when it is another one.

    Parameters
    ----------
    result : napari_sam.training.run.TrainResult
    epochs : int
        The schedule's epochs (``--epochs``).
    seconds : float
        How long this run took.

    Returns
    -------
    str
    """
    history = result.history
    done = (f"{len(history)} of {counted(epochs, 'epoch')} done" if len(history) < epochs
            else counted(len(history), "epoch"))
    took = run_time(result, seconds)
    if not result.path:
        return f"no checkpoint was written ({done}, {took})"
    best = None
    with contextlib.suppress(OSError, ValueError, TypeError):
        from napari_sam.training.checkpoint import checkpoint_metadata_path

        best = int(json.loads(checkpoint_metadata_path(result.path).read_text())["best_epoch"])
    by_epoch = {int(r.get("epoch", i + 1)): r for i, r in enumerate(history)}
    if best not in by_epoch:
        return f"wrote {result.path} ({done}, {took})"
    what, value = _score(by_epoch[best])
    msg = f"wrote {result.path}: the weights of epoch {best}"
    if value is not None:
        msg += f", {what} {value:.3f}"
    last = max(by_epoch)
    _, last_value = _score(by_epoch[last])
    if last != best and last_value is not None:
        msg += f" (the best epoch; the last, epoch {last}, had {last_value:.3f})"
    msg += f"; {done}, {took}"
    base = getattr(result, "base", None) or {}
    if value is not None and what.startswith("val") and base.get("val_iou") is not None:
        before = float(base["val_iou"])
        msg += f"\nthe base model had val IoU {before:.3f} on the same validation images"
        se = by_epoch[best].get("val_gain_se")
        if value <= before:
            msg += (f": no epoch beat it ({value:.3f}), so the base model may be the better "
                    "one for these images; give more or other labelled images, fewer epochs "
                    "or a lower --lr, or keep using the base model")
        elif se is not None and value - before < 2 * se:
            msg += (f": +{value - before:.3f} on {by_epoch[best].get('val_objects', '?')} "
                    f"objects is within noise (the difference's standard error is {se:.3f}), "
                    "so the finetuned model is not shown to be better; validate on more "
                    "labelled images (more images, or a larger --val-fraction) before relying "
                    "on it")
    return msg


def run_time(result, seconds: float) -> str:
    """``seconds`` (this call's time) as the message says it; with the earlier pieces' time of
    a resumed run from its training state (``result.earlier``): "35.0 s in this run (134.0 s
    over 2 runs)"."""
    before, runs = getattr(result, "earlier", (0.0, 0))
    if not runs:
        return f"{seconds:.1f} s"
    return f"{seconds:.1f} s in this run ({before + seconds:.1f} s over {runs + 1} runs)"


@contextlib.contextmanager
def signals_received():
    """Collect the numbers of the signals that reach this process's Python handlers meanwhile
    (a set, filled when the block ends), whichever handler a callee installs: ``train``
    handles SIGTERM itself, so this is how the command learns that a piece was stopped by one.
    Collects nothing outside the main thread."""
    got: set[int] = set()
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        try:
            old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            yield got
            return
        try:
            yield got
        finally:
            signal.set_wakeup_fd(old)
            with contextlib.suppress(BlockingIOError):
                got.update(os.read(r, 4096))
    finally:
        os.close(r)
        os.close(w)


def _piece_message(result, out: Path, epochs: int, seconds: float) -> str:
    """What a piece of a resumable run that finished no epoch wrote: the training state."""
    from napari_sam.training.checkpoint import training_state_path

    state = training_state_path(out)
    written = (f"wrote the training state {state} to resume from" if result.state_saved
               else f"wrote nothing (stopped during a step); {state} is an earlier piece's, "
               "which a rerun resumes from" if state.exists() else "nothing was written")
    msg = (f"this piece finished no epoch ({len(result.history)} of {epochs} done, "
           f"{run_time(result, seconds)}): " + written)
    if result.path:
        msg += f"; {result.path} holds the weights written by an earlier piece"
    return msg


def _already_complete(args, out: Path, epochs: int) -> int:
    """Say that a resumed schedule had nothing left to do, and how to train longer from the
    finished model (exit code 0)."""
    import shlex

    from napari_sam.training.checkpoint import training_state_path

    state = training_state_path(out)
    longer = out.with_stem(out.stem + "_more")
    labels = args.labels if args.labels is not None else args.labels_opt
    command = shlex.join(["napari-sam", "train", str(args.images), str(labels), "--model",
                          str(out), "-o", str(longer), "--epochs", "N"])
    print(f"the schedule in {state} is already complete ({counted(epochs, 'epoch')}); "
          f"nothing was trained or written. To train longer, start from the finished model: "
          f"{command}; to train it again from the start, run without --resume and with --overwrite")
    return 0
