"""Running ``embed``, ``auto`` and ``segment``: arguments checked before any work, the batch's
:class:`napari_sam.batch.Context`, a line per file as it finishes and the summary."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from pathlib import Path

from napari_sam.batch.segment_options import SAM2_KEYS, SAM2_OPTIONS, SEGMENT_OPTIONS
from napari_sam.cli.batch_parsers import BATCH_SIZE_DEFAULT
from napari_sam.cli.closed_output import closed_output_code, stdout_is_closed
from napari_sam.cli.errors import CLIError, print_note
from napari_sam.cli.interruption import INTERRUPTED
from napari_sam.cli.models_command import resolve_model
from napari_sam.words import counted, for_count


def batch_context(args, model: str):
    """The :class:`napari_sam.batch.Context` of a file command's arguments."""
    from napari_sam import batch

    params: dict = {}
    if args.command == "auto":
        for key in (*batch.AUTO_KEYS, *batch.LINK_DEFAULTS, "foreground", "propagate"):
            params[key] = getattr(args, key)
    elif args.command == "segment":
        params = {o.name: getattr(args, o.name) for o in SEGMENT_OPTIONS if o.flag is not None}
    return batch.Context(
        command=args.command, model=model, out_dir=args.output, device=args.device,
        params=params, axes=args.axes, channel=args.channel, overwrite=args.overwrite,
        preview=getattr(args, "preview", False), quiet=args.quiet, verbose=args.verbose,
        suffix=getattr(args, "suffix", "_labels"), fmt=getattr(args, "fmt", "tif"),
        batch_size=args.batch_size, keep_work=args.keep_work,
        embeddings_dir=getattr(args, "embeddings", None),
        tiling=getattr(args, "tiling", "auto"),
    )


def shown_name(job) -> str:
    """How the lines and the summary name a job's input: its file name, below the subfolder
    it was found in (``-r``: ``pos1/img.tif`` and ``pos2/img.tif``, not ``img.tif`` twice)."""
    return (job.subfolder / job.input.name).as_posix()


#: what the line of a file ``auto`` found no object in adds
NOTHING_FOUND = ("nothing stood out: check the channel (--channel N) and that the objects "
                 "differ from the background, or try a real SAM model (--model vit_b_lm) or a "
                 "lower --pred-iou-thresh")


def print_result(res, quiet: bool, what: str = "objects", name: str | None = None,
                 nothing: str = "") -> None:
    """One line for a finished file (only failures when quiet); ``name``: the input as shown
    (default: its file name); ``nothing``: added when it is done with 0 objects."""
    if quiet and res.status != "failed":
        return
    from tqdm.auto import tqdm

    name = Path(res.input).name if name is None else name
    if res.status == "done":
        noun = what[:-1] if res.objects == 1 and what.endswith("s") else what  # 1 slice
        why = f"; {nothing}" if res.objects == 0 and nothing else ""
        if res.details.get("rerun_reason"):
            why += f"; {res.details['rerun_reason']}"
        line = (f"done     {name} -> {res.output} ({res.objects} {noun}, "
                f"{res.seconds:.1f} s{why})")
    elif res.status == "skipped":
        line = f"skipped  {name}: {res.output} is {res.reason}" if res.reason == "complete" \
            else f"skipped  {name}: {res.reason}"
        if res.details.get("written_by_another_process"):
            line += " (written by the other process)"
    elif res.status == "busy":
        line = f"BUSY     {name}: {res.reason}; not done by this run"
    else:
        line = f"FAILED   {name}: {res.reason}"
    tqdm.write(line, file=sys.stderr)
    tb = res.details.get("traceback")
    if tb:
        tqdm.write(tb, file=sys.stderr)


def print_table(table) -> None:
    """Print the summary's rows (status, input, detail) in columns of terminal width
    (:func:`~napari_sam.cli.table_text.display_width`: é, 日本, 🦠 align), the input column
    at most :data:`~napari_sam.cli.table_text.NAME_COLUMN` wide (longer names lose their
    middle)."""
    from napari_sam.cli.table_text import display_width, elide_middle, pad

    rows = [(a, elide_middle(b), c) for a, b, c in table]
    w0 = max(display_width(t[0]) for t in rows)
    w1 = max(display_width(t[1]) for t in rows)
    for t in rows:
        print(f"  {pad(t[0], w0)}  {pad(t[1], w1)}  {t[2]}")


def summary(results, n_jobs: int, seconds: float, *, interrupted: bool = False,
            names: dict | None = None) -> None:
    """The batch's summary: counts, a table of the files and what to do next. ``names``:
    the inputs as shown, by ``JobResult.input`` (default: their file names)."""
    names = names or {}
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    failed = [r for r in results if r.status == "failed"]
    busy = [r for r in results if r.status == "busy"]
    not_run = n_jobs - len(results)
    kept = [r.status == "skipped" and r.details.get("previous_state") == "edited"
            for r in results]
    edited = sum(kept)
    unprompted = sum(r.status == "skipped" and r.reason not in ("", "complete") and not k
                     for r, k in zip(results, kept))
    why = [f"{unprompted} without prompts" if unprompted else "",
           f"{edited} changed since written: kept" if edited else ""]
    why = ", ".join(w for w in why if w)
    replaced = sum(r.status == "done" and bool(r.details.get("replaced")) for r in results)
    resumed = sum(r.status == "done" and _says_resumed(str(r.details.get("rerun_reason")))
                  for r in results)  # an interrupted run's work kept
    done_why = ", ".join(w for w in (
        f"{resumed} resumed" if resumed else "",
        f"{replaced} replaced {for_count(replaced, 'an earlier output', 'earlier outputs')}"
        if replaced else "") if w)
    head = (f"{counted(n_jobs, 'file')}: {done} done"
            + (f" ({done_why})" if done_why else "")
            + f", {skipped} skipped"
            + (f" ({why})" if why else "")
            + f", {len(failed)} failed"
            + (f", {len(busy)} busy in another process" if busy else "")
            + (f", {not_run} not run" if not_run else "") + f" ({seconds:.1f} s)")
    print("\nSummary: " + head)
    rows = [r for r in results if r.status != "done"] if len(results) > 40 else list(results)
    ran = {r.input for r in results}
    left = [inp for inp in names if inp not in ran][:40]  # the inputs a Ctrl-C left
    if rows or left:
        table = [("status", "input", "output / reason")]
        for r in rows:
            skipped_why = r.status == "skipped" and r.reason not in ("", "complete")
            note = r.details.get("note") or ("" if r.reason in ("", "complete") else r.reason)
            if r.status == "done" and r.details.get("rerun_reason"):
                note = "; ".join(n for n in (note, r.details["rerun_reason"]) if n)
            detail = r.reason if r.status in ("failed", "busy") or skipped_why else (
                r.output + (f" ({note})" if note else ""))
            table.append((r.status, names.get(r.input, Path(r.input).name), detail))
        table += [("not run", names[inp], "interrupted before it finished: a rerun does it")
                  for inp in left]
        print_table(table)
    failure_advice(failed)
    unlockable_notes(results)
    if busy:
        one = len(busy) == 1
        print(f"{len(busy)} file{' was' if one else 's were'} being written by another "
              f"napari-sam process and {'is' if one else 'are'} not done by this run; rerun "
              "the same command when it has finished (exit code 1).")
    if interrupted:
        print("Interrupted: finished outputs are complete; rerun the same command to resume.")


def _says_resumed(reason: str) -> bool:
    """Whether a job's ``rerun_reason`` has a ``resumed: ...`` clause (first, or after a
    complete output's reason), not the word inside a name it shows (a model file
    ``vit_b_resumed.pt``)."""
    return reason.startswith("resumed: ") or "; resumed: " in reason


def unlockable_notes(results) -> None:
    """The summary's note of each file system whose output folders cannot lock (the jobs'
    ``details["unlockable"]``): once per file system (not per ``--recursive`` subfolder),
    from this process, also when worker processes ran the jobs (each of them said it
    before, N times or amid the lines)."""
    from napari_sam.batch.jobs import unlockable_text
    from napari_sam.batch.run import unlockable_folders

    for out_dir, why in unlockable_folders(results):
        print(f"Note: {unlockable_text(out_dir, why, ran=True)}.")


def failure_advice(failed) -> None:
    """The summary's closing advice for the failed files: an output path that holds a file
    napari-sam did not write (never replaced) needs that file moved or another ``-o``, not a
    fix of the input; every other failure, a fix and the same command again."""
    theirs = [r for r in failed if r.details.get("not_ours")]
    other = len(failed) - len(theirs)
    if theirs:
        n = len(theirs)
        print(f"{counted(n, 'file')} failed because {for_count(n, 'its', 'their')} output "
              f"path holds a file napari-sam did not write (never replaced, not even with "
              f"--overwrite): move {for_count(n, 'that file', 'those files')} away or choose "
              "another -o, then rerun.")
    if other:
        print(f"{counted(other, 'file')} failed; fix "
              f"{for_count(other, 'it', 'them')} and rerun the same command: complete "
              "outputs are skipped.")


def dangling_link(path) -> Path | None:
    """The first of ``path`` and its parents that is a symbolic link whose target is missing
    (creating the folder fails there), or None."""
    p = Path(path).expanduser()
    for part in (p, *p.parents):  # os.path: False, not PermissionError, behind a locked folder
        if os.path.islink(part) and not os.path.exists(part):
            return part
    return None


def check_output_dir(path: str) -> None:
    """``-o`` must be a folder we can write to: create it if needed and try a file in it."""
    import uuid

    out = Path(path).expanduser()
    link = dangling_link(out)
    if link is not None:
        raise CLIError(f"-o {path}: {link} is a symbolic link whose target {os.readlink(link)} "
                       "is missing; create that folder (or point the link at an existing "
                       "one), or give another output folder", 2)
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"-o {path}: this is an existing file, not a folder; give a folder for "
                       "the outputs (created if needed), e.g. -o out/", 2)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".napari-sam-write-test-{uuid.uuid4().hex[:8]}"
        probe.touch()
        probe.unlink()
    except FileExistsError:
        raise CLIError(f"-o {path}: a part of this path is an existing file, not a folder; "
                       "give another output folder", 2) from None
    except OSError as exc:
        from napari_sam.io import KERNEL_FILE_SYSTEMS, file_system_type, unwritable_reason

        # os.path.exists: False (not PermissionError) where a folder above may not be entered
        home = next(p for p in (out, *out.parents) if os.path.exists(p))
        fix = "" if file_system_type(home) in KERNEL_FILE_SYSTEMS else ", or fix its permissions"
        raise CLIError(f"-o {path}: cannot write there ({unwritable_reason(home, exc)}); choose "
                       f"a folder you can write to{fix}", 2) from None


def check_batch_args(args) -> None:
    """Problems with the arguments that argparse cannot see, reported before any work."""
    from napari_sam.device import resolve_device

    if args.scheduler is not None and not args.scheduler.strip():
        raise CLIError("--scheduler is empty: give the scheduler's address, e.g. "
                       "tcp://host:8786 (a scheduler file's address: check that the scheduler "
                       "has written it), or leave --scheduler out", 2)
    if args.scheduler is not None:  # the workers' devices, not this machine's
        check_scheduler_address(args.scheduler)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(args.device)):
            raise CLIError(f"--device {args.device!r}: use auto, cpu, cuda, cuda:N or mps", 2)
    else:
        try:
            resolve_device(args.device, auto_hint="--device auto")
        except ValueError as exc:
            raise CLIError(f"--device: {exc}", 2) from None
    if args.block_slices is not None and args.workers is None and args.scheduler is None:
        raise CLIError("--block-slices splits stacks between the workers of a cluster; add "
                       "--workers N or --scheduler ADDRESS, or leave it out", 2)
    suffix = getattr(args, "suffix", "_labels")
    if any(sep in suffix for sep in ("/", "\\")) or suffix in (".", ".."):
        raise CLIError(f"--suffix {suffix!r}: no folders in the suffix; use -o to choose the "
                       "output folder", 2)
    if args.workers is not None or args.scheduler is not None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            option = "--workers" if args.workers is not None else "--scheduler"
            raise CLIError(f"{option} runs the files on dask.distributed, which is not "
                           "installed: pip install \"napari-sam-stacks[distributed]\" (or "
                           f"leave {option} out to run them here, one after the other)",
                           2) from None
    emb = getattr(args, "embeddings", None)
    if emb is not None and not Path(emb).expanduser().is_dir():
        raise CLIError(f"--embeddings {emb}: no such folder; write the stores first with "
                       f"`napari-sam embed INPUTS -o {emb}`, or leave --embeddings out", 2)
    out = Path(args.output).expanduser()
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"-o {args.output}: this is an existing file, not a folder; give a "
                       "folder for the outputs (created if needed), e.g. -o out/", 2)


def model_input_size(model: str, device: str) -> int | None:
    """The input side of a SAM 1 model (registry name or checkpoint file); None for SAM 2.1."""
    from napari_sam import batch
    from napari_sam.models.config import CONFIGS
    from napari_sam.models.registry import REGISTRY

    if model in REGISTRY:
        config = CONFIGS.get(REGISTRY[model].architecture)
        return None if config is None else int(config.img_size)
    loaded, _ = batch.get_model(model, device)
    return int(loaded.img_size) if getattr(loaded, "family", "sam1") == "sam1" else None


def check_tiling(args, model: str) -> None:
    """``--tiling`` against the model's input size, before any file (CLIError, exit code 2);
    a note when ``--block-slices`` makes the stacks untiled."""
    from napari_sam.cli.arguments import tiling_text
    from napari_sam.tiling import choose_tiling

    tiling = getattr(args, "tiling", "auto")
    if tiling is None:
        return
    blocks = args.block_slices is not None and args.command in ("auto", "embed")
    if blocks and not args.quiet:
        print_note("--block-slices: stacks are embedded untiled (blocks split an untiled "
                   "store); leave --block-slices out to tile stacks with large slices")
    if tiling == "auto" or blocks:
        return
    size = model_input_size(model, args.device)
    if size is None:
        return
    try:
        choose_tiling((1 << 20, 1 << 20), size, tiling)
    except ValueError as exc:
        raise CLIError(f"--tiling {tiling_text(tiling)}: {exc} (the model's input is {size} "
                       "px)", 2) from None


def check_scheduler_address(address: str) -> None:
    """CLIError (exit code 2) for a ``--scheduler`` that is no dask address: SCHEME://HOST:PORT
    (or HOST:PORT) with a port from 1 to 65535; ``inproc://`` addresses pass."""
    text = address.strip()
    if text.startswith("inproc://"):
        return
    m = re.fullmatch(r"(?:[a-z]+://)?(\[[^\]]+\]|[^:/\s\[\]]+):(\d+)/?", text)
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise CLIError(f"--scheduler {address}: not a scheduler address; give it as "
                       "tcp://HOST:PORT (e.g. tcp://gpu-head:8786: `dask scheduler` prints it "
                       "and writes it to its --scheduler-file)", 2)


def check_model_loads(model: str, device: str) -> None:
    """Load a checkpoint file given with --model once, before any file, in this process (the
    serial run then reuses it): a file that is no checkpoint is one error, not one per file."""
    from napari_sam import batch
    from napari_sam.models.registry import REGISTRY

    if model in REGISTRY:
        return
    try:
        batch.get_model(model, device)
    except Exception as exc:
        first = " ".join((str(exc) or type(exc).__name__).strip().splitlines()[0].split())
        first = first.rstrip(".")
        if len(first) > 800:  # the advice ends the message: cut only what is unreadable
            first = first[:800] + "..."
        raise CLIError(f"--model {model}: cannot load it as a model: {first}; give a SAM "
                       "checkpoint (.pt/.pth, e.g. from `napari-sam train`) or a name from "
                       "`napari-sam models`", 2) from None


def replay_ignored(args) -> list[str]:
    """Notes for the options a session replay does not follow: it replays with SAM 1 and
    embeds with the tiling the session recorded."""
    notes = []
    if getattr(args, "method", None) not in (None, "sam1"):
        notes.append(f"--method {args.method} is ignored: a session replays with SAM 1, as "
                     "the dock recorded it")
    if getattr(args, "tiling", "auto") != "auto":
        notes.append("--tiling is ignored: a session replays with the tiling it recorded")
    return notes


def segment_method(args, model: str, device: str | None = None) -> str:
    """``segment``'s propagation method: ``--method``, or the model's family when it is not
    given; CLIError (exit code 2) when the two do not fit, before any file is read. For
    ``embed`` and ``auto`` (SAM 1 only): "sam1", or CLIError for a SAM 2.1 model. A checkpoint
    file is loaded on ``device`` (default ``--device``; "cpu" for a cluster's client)."""
    from napari_sam import batch
    from napari_sam.models.registry import REGISTRY, describe_family

    if model in REGISTRY:
        family, what = REGISTRY[model].family, None
    else:  # a checkpoint file: loaded once here (the serial run reuses it)
        loaded, _ = batch.get_model(model, device or args.device)
        family, what = getattr(loaded, "family", "sam1"), describe_family(loaded)
    if what is None:
        what = (f"a SAM 2.1 checkpoint ({REGISTRY[model].architecture})" if family == "sam2"
                else f"a SAM 1 model ({REGISTRY[model].architecture})")
    if args.command != "segment":
        if family == "sam2":
            raise CLIError(f"`napari-sam {args.command}` needs a SAM 1 model, but --model {model} "
                           f"is {what}; SAM 2.1 models propagate prompts (`napari-sam segment "
                           "--method sam2`); use a SAM 1 model such as vit_b_lm here", 2)
        return "sam1"
    method = getattr(args, "method", None) or family
    if method == "sam2" and family != "sam2":
        raise CLIError(f"--method sam2 needs a SAM 2.1 model, but --model {model} is {what}; "
                       "give --model sam2.1_hiera_tiny (or another SAM 2.1 checkpoint: "
                       "`napari-sam models`), or leave --method out to propagate with SAM 1", 2)
    if method == "sam1" and family == "sam2":
        raise CLIError(f"--method sam1 needs a SAM 1 model, but --model {model} is {what}; "
                       "use --method sam2 (or leave --method out) to propagate with SAM 2.1's "
                       "memory, or give a SAM 1 model such as vit_b_lm", 2)
    return method


def segment_params(params: dict, method: str, args) -> dict:
    """The parameters a ``segment`` output records (its resume signature): SAM 1's options
    for sam1 (as before there was a choice); the method and SAM 2's options for sam2."""
    if method == "sam1":
        return params
    return {"method": "sam2", **{k: getattr(args, k) for k in SAM2_KEYS}}


def unused_sam2_options(args, method: str) -> list[str]:
    """The SAM 2 options (``--stop-after-absent``) given with a value other than their default
    to a run that propagates with SAM 1, which does not read them."""
    if method == "sam2":
        return []
    return [o.flag for o in SAM2_OPTIONS if o.name != "method"
            and getattr(args, o.name, o.default) != o.default]


#: Why an option of SAM 1 propagation does nothing for a run that propagates with SAM 2.1.
SAM1_ONLY_WHY = {
    "--embeddings": "SAM 2.1 propagation encodes each slice itself and reads no embedding "
                    "stores (`napari-sam embed` writes them with SAM 1 models)",
    "--tiling": "SAM 2.1 propagation resizes each slice to the model's input, untiled",
    "--batch-size": "SAM 2.1 propagation encodes one slice at a time",
}


def unused_sam1_options(args, method: str) -> list[str]:
    """Notes for the SAM 1 options given (with a value other than their default) to a run
    that propagates with SAM 2.1, which does not read them: the prompting mode and stop rules
    of :data:`SEGMENT_OPTIONS`, ``--embeddings``, ``--tiling`` and ``--batch-size``.

    Raises CLIError (exit code 2) for ``--max-slices``: ignoring a limit would propagate
    further than asked."""
    if method != "sam2":
        return []
    if getattr(args, "max_slices", None) is not None:
        raise CLIError(f"--max-slices {args.max_slices} limits SAM 1 propagation (--method "
                       "sam1) only; SAM 2.1 propagation has no slice limit: leave it out and "
                       "end objects with --stop-after-absent N or stop markers in the prompts "
                       "file (a 'stop' column), or propagate with a SAM 1 model", 2)
    notes = [f"{o.flag} applies to SAM 1 propagation (--method sam1) only; ignored: SAM 2.1 "
             "propagation does not read it" for o in SEGMENT_OPTIONS
             if o.flag is not None and getattr(args, o.name, o.default) != o.default]
    given = {"--embeddings": getattr(args, "embeddings", None) is not None,
             "--tiling": getattr(args, "tiling", "auto") != "auto",
             "--batch-size": getattr(args, "batch_size", BATCH_SIZE_DEFAULT) != BATCH_SIZE_DEFAULT}
    notes += [f"{flag} is ignored: {SAM1_ONLY_WHY[flag]}" for flag, on in given.items() if on]
    return notes


def check_session(prompts) -> None:
    """A session file that cannot be replayed (one with SAM 2 operations): CLIError (exit
    code 2) before any work, naming what to do instead."""
    session = getattr(prompts, "session", None)
    if session is None:
        return
    from napari_sam.session import SessionError, check_replayable

    try:
        check_replayable(session)
    except SessionError as exc:
        name = session.path.name if session.path else "the session"
        raise CLIError(f"--prompts {name}: {exc}", 2) from None


def check_method_has_model(args, prompts) -> None:
    """``--method sam2`` without ``--model``: CLIError (exit code 2) before any work (the
    default model is a SAM 1 model), naming the SAM 2.1 models to give instead."""
    if (getattr(args, "method", None) != "sam2" or args.model is not None
            or getattr(prompts, "session", None) is not None):
        return
    from napari_sam.models.registry import REGISTRY

    names = [n for n, s in REGISTRY.items() if s.family == "sam2"]
    raise CLIError("--method sam2 needs a SAM 2.1 model, and without --model the default is a "
                   "SAM 1 model (a downloaded one or the bundled demo model); give --model "
                   f"{names[0] if names else 'sam2.1_hiera_tiny'} (downloaded on first use; "
                   f"others: {', '.join(names[1:]) or 'none'}) or a SAM 2.1 checkpoint file", 2)


def model_line(model: str, device: str) -> str:
    """The model note: which weights run, a checkpoint file with its model id (what the
    output metadata records), so that a run with another file's weights is seen at once."""
    from napari_sam import batch
    from napari_sam.models.registry import REGISTRY

    if model in REGISTRY:
        return f"model {model}"
    loaded, _ = batch.get_model(model, device)  # loaded once above: cached
    return f"model {model} (id {getattr(loaded, 'model_id', '?')})"


def model_load_notes(model: str, device: str) -> tuple[str, ...]:
    """What loading the model ``model`` did that its user should know (``load_notes``: a
    checkpoint without its metadata file took the demo model's settings), said even with
    ``-q``: it changes the results."""
    from napari_sam import batch
    from napari_sam.models.registry import REGISTRY

    if model in REGISTRY:
        return ()
    loaded, _ = batch.get_model(model, device)  # loaded once above: cached
    return tuple(getattr(loaded, "load_notes", ()))


def device_line(args, method: str | None, slice_workers: int) -> str:
    """The device note: where the model runs and in which precision. SAM 2.1 propagation
    runs in float32 whatever ``--precision`` says (the line says so)."""
    from napari_sam.device import describe, resolve_device

    workers = f", {slice_workers} slices at once" if slice_workers > 1 else ""
    if args.scheduler is not None:  # not this machine's: the workers' devices
        precision = ("float32 (SAM 2.1 propagation)" if method == "sam2" else
                     f"precision {args.precision}" + (" (each worker's choice)"
                                                      if args.precision == "auto" else ""))
        return (f"device {args.device} on the cluster's workers, {precision}; the output "
                "metadata records the precision each file used")
    if method == "sam2":
        given = "; --precision is not used" if args.precision != "auto" else ""
        return (f"device {resolve_device(args.device)}, float32 (SAM 2.1 propagation runs in "
                f"float32{given}){workers}")
    text = describe(args.device, args.precision,
                    chosen_by=getattr(args, "precision_source", "--precision"))
    return f"device {text}{workers}"


def missing_folders(path) -> list[Path]:
    """The folders of ``path`` (itself and its parents) that do not exist yet, deepest
    first: what creating it makes, and what :func:`remove_empty` takes away again."""
    out, made = Path(path).expanduser().absolute(), []
    while not out.exists() and out != out.parent:
        made.append(out)
        out = out.parent
    return made


def folders_to_make(paths) -> list[Path]:
    """The folders of every one of ``paths`` (itself and its parents) that do not exist yet,
    deepest first: ``-o`` and the subfolders under it that the outputs of ``--recursive``
    inputs mirror, before the run creates them."""
    made = {folder for path in paths for folder in missing_folders(path)}
    return sorted(made, key=lambda folder: (-len(folder.parts), str(folder)))


def remove_empty(folders) -> None:
    """Remove the folders a run created (``folders``, deepest first) where they are still
    empty but for empty folders of napari-sam's work folder: a run stopped by an error or
    interrupted before it wrote anything leaves no empty ``-o`` behind, and a ``--recursive``
    subfolder whose files all failed no empty mirror of it. A folder that existed before the
    run is never in ``folders``."""
    from napari_sam.batch.inputs import WORK_DIR

    for folder in folders:
        work = Path(folder) / WORK_DIR
        for root, _, _ in sorted(os.walk(work), key=lambda w: -len(w[0])):  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(root)  # only when empty
        with contextlib.suppress(OSError):  # not empty (outputs, another run's files): kept
            Path(folder).rmdir()


def session_model(prompts, args) -> str | None:
    """``--model``, or for a session file without it the session's own model (so a replay
    reproduces the dock's labels without repeating which model made them)."""
    session = getattr(prompts, "session", None)
    if session is None or args.model is not None:
        return args.model
    from napari_sam.batch import BatchError
    from napari_sam.session import SessionError, check_model

    try:
        spec = check_model(session)
    except SessionError as exc:
        raise BatchError(str(exc)) from None
    from napari_sam.batch.models import model_file_id

    now = model_file_id(spec)  # a checkpoint written again at that path (retrained)?
    from napari_sam.models.registry import model_id_parts

    recorded = model_id_parts((session.model or {}).get("id"))[0]
    if now is not None and recorded.startswith("file:") and now != recorded:
        print_note(f"model {spec}: the session's path, but the file holds other weights now "
                   f"(id {now}; the session was made with {recorded}): the prompts are rerun "
                   "with them, and what changed is listed per object")
    elif not args.quiet:
        print_note(f"model {spec}: the session's (--model replays it with another)")
    return spec


def session_precision(prompts, args) -> str:
    """``--precision``, or for a session file replayed with ``--precision auto`` (the default)
    the precision the session recorded (fp32, bf16 or fp16), said in a note: with the
    session's model, device and precision the replay writes the dock's labels exactly."""
    session = getattr(prompts, "session", None)
    if session is None or args.precision != "auto":
        return args.precision
    recorded = str((session.model or {}).get("precision") or "").lower()
    if recorded not in ("fp32", "bf16", "fp16"):
        return args.precision
    if not args.quiet:
        print_note(f"precision {recorded}: the session's (--precision replays it with another)")
    return recorded


def label_images_left_out(found, args):
    """``found`` without the label images found in folders or by globs
    (:func:`napari_sam.batch.label_inputs.leave_out_label_images`), each said in a note with
    how to segment it anyway; all of it with ``--include-labels``. A CLIError (exit 2) when
    nothing is left."""
    from napari_sam.batch.label_inputs import leave_out_label_images

    if getattr(args, "include_labels", False):
        return found
    kept, left = leave_out_label_images(found, args.inputs)
    for path, reason in [] if args.quiet else left:
        print_note(f"note: {path} looks like a label image ({reason}): left out; to include "
                   f"it anyway, pass --include-labels or name the file itself")
    if not kept:
        raise CLIError(f"every input found looks like a label image ({left[0][0]}: "
                       f"{left[0][1]}); to include them anyway, pass --include-labels or name "
                       "the files themselves", code=2)
    return kept


def companions_left_out(found, args):
    """``found`` without napari-sam's own files and the files that are no images found in
    folders or by globs (:func:`napari_sam.batch.glob_companions.leave_out_companions`), said
    in a note. A CLIError (exit 2) when nothing is left."""
    from napari_sam.batch.glob_companions import companions_note, leave_out_companions

    kept, own, other = leave_out_companions(found, args.inputs)
    for note in [] if args.quiet else companions_note(own, other):
        print_note(note)
    if not kept:
        raise CLIError(f"no images among the inputs found ({(own + other)[0]}, ...: "
                       "napari-sam's own files or no images); point INPUT at image files, "
                       "folders or stores", code=2)
    return kept


def cmd_batch(args) -> int:
    """Run ``embed``, ``auto`` or ``segment``; returns the exit code. An ``-o`` folder this
    run created, and a subfolder of it for ``--recursive`` inputs, is removed again when the
    run ends with nothing written in it (an error, failed files, Ctrl-C or SIGTERM), whatever
    the exit code."""
    from napari_sam import batch

    check_batch_args(args)
    found = batch.collect_inputs_with_folders(args.inputs, recursive=args.recursive)
    for note in [] if args.quiet else found.case_notes:  # "*.tif" and IMG.TIF
        print_note(f"note: {note}")
    found = label_images_left_out(companions_left_out(found, args), args)
    inputs, subfolders = [p for p, _ in found], dict(found)
    for left, kept in [] if args.quiet else found.duplicates:  # one file, one output: said
        print_note(f"note: {left} is the same file as {kept} ({os.path.realpath(left)}) and "
                   f"would write the same output: done once, as {kept}")
    prompts = None
    if args.command == "segment":
        prompts = batch.load_prompts(args.prompts, defer_problems=True)
        check_session(prompts)
        check_method_has_model(args, prompts)
        args.model = session_model(prompts, args)
        given = args.precision
        args.precision = session_precision(prompts, args)
        if given == "auto" and args.precision != "auto":
            args.precision_source = "the session"
    ctx = batch_context(args, args.model or "demo")
    jobs = batch.make_jobs(inputs, ctx, prompts, subfolders)
    if prompts is not None:  # every prompt against its stack's shape, before any embedding
        for note in batch.check_prompts(prompts, jobs, ctx):
            print_note(note)
    made = folders_to_make([args.output, *(job.output.parent for job in jobs)])
    check_output_dir(args.output)  # created here, once the inputs and prompts are good
    try:
        return run_batch(args, ctx, jobs, prompts)
    finally:  # an error, a failure or Ctrl-C before anything was written: no empty folders
        remove_empty(made)


def prepare_run(args, ctx, prompts):
    """The checks and notes between the output folder and the first job: the model (resolved,
    loaded once here for local runs), its family against the command and ``--method``, the
    device line, ``--tiling``, and the options the chosen propagation does not read. Returns
    the batch's :class:`~napari_sam.batch.Context`."""
    from dataclasses import replace

    from napari_sam.device import PRECISION_ENV, configure_threads, slice_workers

    replaying = getattr(prompts, "session", None) is not None
    if not replaying and args.model is not None:
        from napari_sam.models.registry import REGISTRY

        if args.model in REGISTRY:  # a model of the other family: said before any download
            segment_method(args, args.model)
    model = resolve_model(args.model, quiet=args.quiet)
    ctx = replace(ctx, model=model)
    if args.precision != "auto":  # --precision: here and in local worker processes
        os.environ[PRECISION_ENV] = args.precision
    ctx = replace(ctx, precision=args.precision)  # and in the tasks on a cluster's workers
    if getattr(args, "threads", None) is not None:
        configure_threads(threads=args.threads)
    local = args.scheduler is None and args.workers is None
    ctx = replace(ctx, slice_workers=slice_workers() if local and args.command == "auto" else 1)
    # a checkpoint file is loaded once here before any work, also for a cluster (on the CPU:
    # the client may have no GPU), so that a file that is no model is one error, exit code 2
    here = args.device if local else "cpu"
    check_model_loads(model, here)
    method = None
    if args.command == "segment":  # a session replays with SAM 1
        method = "sam1" if replaying else segment_method(args, model, here)
    else:
        segment_method(args, model, here)  # embed and auto: SAM 1 only (loaded above)
    if not args.quiet:
        print_note(model_line(model, here))
        print_note(device_line(args, method, ctx.slice_workers))
    for note in model_load_notes(model, here):  # e.g. a checkpoint without its .json
        print_note(note)
    check_tiling(args, model)
    if args.command == "segment":
        notes = replay_ignored(args) if replaying else unused_sam1_options(args, method)
        if args.block_slices is not None:
            notes.append("--block-slices is ignored: segment propagates slice after slice, "
                         "one task per file (blocks split embed and auto)")
        notes += [f"{flag} applies to SAM 2.1 propagation (--method sam2) only; ignored"
                  for flag in unused_sam2_options(args, method)]
        for note in [] if args.quiet else notes:
            print_note(note)
        ctx = replace(ctx, params=segment_params(ctx.params, method, args))
    return ctx


def run_batch(args, ctx, jobs, prompts) -> int:
    """Run the jobs (after :func:`prepare_run`): a line per file, the summary; the exit
    code (130 when interrupted)."""
    from napari_sam import batch

    ctx = prepare_run(args, ctx, prompts)
    results = []
    t0 = time.perf_counter()
    names = {str(job.input): shown_name(job) for job in jobs}

    def on_result(res):
        results.append(res)
        print_result(res, args.quiet, "slices" if args.command == "embed" else "objects",
                     names.get(res.input), nothing=NOTHING_FOUND if args.command == "auto" else "")

    def on_wait(job, pid):
        from tqdm.auto import tqdm

        tqdm.write(f"waiting  {shown_name(job)}: another napari-sam process"
                   + (f" (pid {pid})" if pid else "") + f" is writing {job.output}; this run "
                   "continues when it finishes (Ctrl-C to stop; the rest resumes on a rerun)",
                   file=sys.stderr)

    workers = args.scheduler is not None or args.workers is not None
    before = batch.output_stamps(jobs) if workers else {}  # what this run wrote, after Ctrl-C
    interrupted = False
    try:
        batch.run_jobs(jobs, ctx, scheduler=args.scheduler, workers=args.workers,
                       block_slices=args.block_slices, on_result=on_result, on_wait=on_wait,
                       note_unlockable=False)  # the summary says it
    except KeyboardInterrupt:
        if workers:  # the worker processes finish the task they run
            results += batch.finished_meanwhile(jobs, results, ctx, before)
        interrupted = True
    code = INTERRUPTED if interrupted else (
        0 if all(r.ok for r in results) and len(results) == len(jobs) else 1)
    try:
        summary(results, len(jobs), time.perf_counter() - t0, interrupted=interrupted,
                names=names)
    except BrokenPipeError:  # `| head -1`: a failed file's 1 (or 130) wins over 141
        if not stdout_is_closed():
            raise
        return closed_output_code(code)
    return code
