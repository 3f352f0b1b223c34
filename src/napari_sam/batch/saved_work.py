"""What an interrupted run left of a job and whether a rerun keeps it: the resume record is
the job's work folder (``auto``: its ``params.json`` and per-slice files, read before the
rerun changes it, :func:`saved_auto_work`; ``segment``: the embeddings it reads back from
its store there, :func:`saved_embeddings`; ``embed``: those it reads back from its
``.partial`` store, :func:`embeddings_record`; ``segment --method sam2`` keeps nothing,
:func:`recomputed_in_full`; a ``"partial"`` sidecar is none, and Ctrl-C leaves none), and
the words of the rerun's line about it (:func:`resume_reason`):
``resumed: kept 5 of 20 slices an interrupted run finished, computed the other 15`` after
Ctrl-C, SIGTERM or SIGKILL alike, or ``recomputed: the input changed (since an interrupted
run, whose 5 finished slices were discarded)``.

A record (a dict, as it travels in a :class:`~napari_sam.batch.JobResult`'s ``details``):
``unit`` (``"slice"``, ``"time point"``), ``of`` (how many the job has), ``kept`` (how many an
earlier run finished that this run keeps), ``discarded`` (None, or ``{"why": what changed,
"count": how many were thrown away}``, with ``"unit"`` when they are not the record's: a movie's
slices of one time point) and, for a movie, ``within`` (the record of the first time point it
computed) and ``unprompted`` (its time points without prompts, which ``segment`` does not
compute)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.jobs import OutputVerdict
from napari_sam.batch.linking import LINK_DEFAULTS
from napari_sam.batch.models import model_file_id, packaged_model_id
from napari_sam.batch.rerun_reason import change_reason
from napari_sam.words import counted

#: The name of the work folder's record of what its slices were made for.
MARKER = "params.json"

#: Why a work folder's slices are discarded when no difference can be named.
UNMATCHED = "its record does not match this run"

#: The parameters an ``auto`` job's per-slice work is not made for (:func:`auto_work_key`):
#: linking and propagation, which run after the slices (a rerun with ``--no-propagate`` or
#: another ``--link-iou`` keeps them).
AFTER_THE_SLICES = (*LINK_DEFAULTS, "propagate")

#: The file a job's work folder holds when a finished run kept it (``--keep-work``): what a
#: rerun reuses of it is no interrupted run's (:func:`take_finished_mark`).
FINISHED = "finished"


def mark_finished(work: Path) -> None:
    """Mark ``work`` (a finished job's work folder, kept) as a finished run's; best effort
    (only words depend on it)."""
    if work.is_dir():
        try:
            (work / FINISHED).touch()
        except OSError:
            pass


def take_finished_mark(work: Path) -> bool:
    """Whether ``work`` was kept by a finished run (:func:`mark_finished`); the mark is
    removed, so that what this run adds, if it is interrupted, reads as an interrupted run's."""
    mark = work / FINISHED
    if not mark.exists():
        return False
    try:
        mark.unlink()
    except OSError:
        pass
    return True


def work_records(work: Path) -> dict[str, str]:
    """The records (:data:`MARKER` files, by path) a job's work folder ``work`` holds now, for
    :func:`put_back_finished_mark` to tell whether a job emptied and refilled it."""
    records = {}
    for path in sorted(work.rglob(MARKER)) if work.is_dir() else ():
        try:
            records[str(path)] = path.read_text()
        except OSError:
            records[str(path)] = ""
    return records


def put_back_finished_mark(work: Path, records: dict[str, str]) -> None:
    """After a job that took ``work``'s :data:`FINISHED` mark failed with an error: put the
    mark back when the folder's records are still ``records`` (:func:`work_records` as the
    job took the mark), so the slices a finished run kept with ``--keep-work`` are still
    said as such by a rerun (``reused: ... from a finished run's work folder``), not as an
    interrupted run's. When the job emptied the folder for other settings (its records
    changed), what is there is the failed run's, and a rerun resumes it as any run that did
    not finish. Best effort (only words depend on it)."""
    if records and work_records(work) != records:
        return
    mark_finished(work)


def work_files(work: Path) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of every file in a job's work folder ``work`` now (empty
    without one): whether a job stopped by Ctrl-C added to it (:func:`finished_mark_taken`)."""
    files = {}
    for path in work.rglob("*") if work.is_dir() else ():
        with contextlib.suppress(OSError):
            st = path.stat()
            files[str(path)] = (st.st_size, st.st_mtime_ns)
    return files


@contextlib.contextmanager
def finished_mark_taken(work: Path):
    """Take ``work``'s :data:`FINISHED` mark (:func:`take_finished_mark`) while the block
    runs: yields whether it was there. A block that fails with an error puts it back
    (:func:`put_back_finished_mark`); one stopped by Ctrl-C or SIGTERM does not (what it
    added reads as an interrupted run's), unless it added or changed nothing there (stopped
    while the model loaded: the folder is still the finished run's, :func:`work_files`)."""
    took = take_finished_mark(work)
    records = work_records(work) if took else {}
    files = work_files(work) if took else {}
    try:
        yield took
    except Exception:
        if took:
            put_back_finished_mark(work, records)
        raise
    except BaseException:  # Ctrl-C, SIGTERM
        if took and work_files(work) == files:
            mark_finished(work)
        raise


def auto_work_key(job: Job, ctx: Context, tiling=None) -> dict:
    """What an ``auto`` job's per-slice work is made for: the signature without the keys that
    only link and propagate (:data:`AFTER_THE_SLICES`), the input (path, size, mtime,
    sampled content hash) and the model file's id; a work folder is kept only when its
    :data:`MARKER` holds the same, but for the input's path (:func:`same_key`).

    The signature's ``tiling`` is the tiling the slices are segmented with (``tiling``, a
    :class:`~napari_sam.tiling.Tiling` or None: untiled), ``[window, halo]`` (absent when
    untiled), not the option that chose it: the slices an untiled serial run (``auto``) saved
    are those a run split into blocks (``--block-slices``, which never tiles) makes."""
    st = job.input.stat()
    sig = {k: v for k, v in ctx.signature().items()
           if k not in AFTER_THE_SLICES and k != "tiling"}
    if tiling is not None:
        sig["tiling"] = [int(tiling.window), int(tiling.halo)]
    spec = str(sig.get("model"))
    return {"signature": sig,
            "input": [str(job.input.resolve()), st.st_size, st.st_mtime_ns,
                      nio.content_sample_hash(job.input)],
            "model_id": model_file_id(spec) or packaged_model_id(spec)}


def recorded_key(work: Path) -> dict | None:
    """The key a work folder records (None: none, or unreadable)."""
    try:
        key = json.loads((work / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return key if isinstance(key, dict) else None


def same_key(recorded: dict | None, key: dict) -> bool:
    """Whether a recorded key is this one (as JSON keeps it: tuples are lists), wherever the
    input is now (:func:`comparable`)."""
    return recorded is not None and comparable(recorded) == comparable(key)


def comparable(key: dict) -> dict:
    """A key as JSON keeps it, its input without the path: the same file moved or renamed
    (size, time stamp and sampled content the same) keeps the slices an interrupted run made
    of it, as its complete output is kept
    (:func:`~napari_sam.io.incomplete_reason` does not compare the path either)."""
    key = json.loads(json.dumps(key))
    if isinstance(key.get("input"), list) and key["input"]:
        key["input"] = key["input"][1:]
    sig = key.get("signature")
    if isinstance(sig, dict) and "tiling" in sig and sig["tiling"] is None:
        del sig["tiling"]  # untiled (a record of a run split into blocks, before 2026-12-07)
    return key


def saved_auto_work(work: Path, key: dict, n: int | None = None) -> dict:
    """The record of what ``work`` (an ``auto`` job's per-slice folder) holds for a job of
    ``key`` (:func:`auto_work_key`) with ``n`` slices, before the job empties or reuses it."""
    saved = len(list(work.glob("z*.npz"))) if work.is_dir() else 0
    recorded = recorded_key(work)
    record = {"unit": "slice", "of": n, "kept": 0, "discarded": None}
    if same_key(recorded, key):
        record["kept"] = saved
    elif saved:
        try:
            why = key_change(recorded, key)
        except Exception:  # noqa: BLE001 - only words (a record of another layout): the job runs
            why = UNMATCHED
        record["discarded"] = {"why": why, "count": saved}
    return record


def saved_embeddings(emb, work: Path) -> dict | None:
    """The record of a ``segment`` job's embeddings (``emb``, computed) read back from the
    store in its work folder ``work`` (an interrupted run's; ``kept``) and those computed
    again because the input changed since (``discarded``): :func:`embeddings_record`; None
    when they are not in the work folder (the user's ``--embeddings`` store)."""
    store = getattr(emb, "store", None)
    if store is None or Path(work) not in Path(store).parents:
        return None
    return embeddings_record(emb)


def embeddings_record(emb) -> dict | None:
    """The record of embeddings ``emb`` computed in a store an interrupted run had begun
    (``segment``'s in its work folder, ``embed``'s ``.<output>.partial``): ``kept`` those
    read back, ``discarded`` those computed again because the input changed since; a tiled
    stack's counted in windows of slices (``"window embedding"``: a slice of 121 windows is
    partly kept when the run stopped amid it). None without a store."""
    tiling = getattr(emb, "tiling", None)
    if getattr(emb, "store", None) is None:
        return None
    parts = [emb] if tiling is None else [emb.window_stack(i) for i in range(len(tiling))]
    if any(getattr(p, "read_back", None) is None for p in parts):
        return None
    kept = sum(int(p.read_back) for p in parts)
    stale = sum(int(getattr(p, "stale", 0)) for p in parts)
    return {"unit": "slice embedding" if tiling is None else "window embedding",
            "of": int(emb.shape[0]) * len(parts), "kept": kept,
            "discarded": {"why": "the input changed", "count": stale} if stale else None}


def recomputed_in_full(n: int, unit: str = "slice") -> dict:
    """The record of a job that keeps nothing of an interrupted run (``segment --method
    sam2``: no store, each slice encoded as its propagation reaches it): a rerun after one
    killed as it wrote says ``recomputed: an earlier run did not finish it``, not
    ``resumed``."""
    return {"unit": unit, "of": int(n), "kept": 0, "discarded": None}


def key_change(recorded: dict | None, key: dict) -> str:
    """What differs between a work folder's recorded key and this job's, in the words of a
    rerun's reason (:func:`~napari_sam.batch.rerun_reason.change_reason`); a record of an
    older napari-sam that lacks a field of this one's (the input's content hash, the model's
    id) is said so, not as a changed input or model."""
    if not recorded:
        return "its record is missing"
    recorded, key = comparable(recorded), comparable(key)
    lacks = []
    old_input, new_input = recorded.get("input"), key["input"]
    if old_input != new_input:
        if not (isinstance(old_input, list) and len(old_input) < len(new_input)
                and old_input == new_input[:len(old_input)]):
            return "the input changed"
        lacks.append("the input's content hash")  # (older records: size, mtime)
    # (a work key's tiling is the one in effect, absent when untiled: said "off")
    old, new = [{"tiling": None, **sig} for sig in (recorded.get("signature") or {},
                                                   key["signature"])]
    if old != new:
        differs = tuple(sorted(k for k in set(old) | set(new)
                               if k not in old or k not in new or old[k] != new[k]))
        return change_reason(OutputVerdict("changed", "signature", recorded=old,
                                           signature=new, differs=differs))
    if "model_id" not in recorded:
        lacks.append("the model's id")
    elif recorded["model_id"] != key["model_id"]:
        return change_reason(OutputVerdict("changed", "model", model_ids=(
            str(recorded.get("model_id") or ""), str(key["model_id"]))))
    if lacks:
        return "made by an older napari-sam whose record lacks " + " and ".join(lacks)
    return UNMATCHED


def resume_reason(record: dict, unfinished_output: bool = False) -> str:
    """Why a job ran, from its :func:`saved_auto_work` record (or a movie's, or
    :func:`saved_embeddings`'): what it kept of an interrupted run and what it computed, or
    why it discarded that run's work; "" when there was nothing to keep (no earlier run, or
    one that finished nothing), unless ``unfinished_output``: an output is there that a
    ``"partial"`` sidecar marks unfinished (its process was killed after writing it), which
    this run replaces (``recomputed: an earlier run did not finish it``). The same after
    Ctrl-C or SIGTERM (which put the sidecar back) as after SIGKILL (which leaves a
    ``"partial"`` one)."""
    unit, dropped = record["unit"], record.get("discarded")
    if dropped:
        count = int(dropped["count"])
        run = ("a finished run kept with --keep-work" if record.get("finished")
               else "an interrupted run")
        return (f"recomputed: {dropped['why']} (since {run}, whose "
                f"{counted(count, 'finished ' + dropped.get('unit', unit))} "
                f"{'was' if count == 1 else 'were'} discarded)")
    words = kept_clause(record)
    if words:
        return words
    if unfinished_output:
        return "recomputed: an earlier run did not finish it"
    return ""  # nothing kept, nothing discarded: as a first run (Ctrl-C or SIGKILL alike)


def kept_clause(record: dict) -> str:
    """:func:`kept_words` with its verb: ``resumed: kept 5 of 20 slices an interrupted run
    finished, ...``, or for a work folder a finished run kept (``"finished"`` in the record,
    ``--keep-work``) ``reused: 20 of 20 slices from a finished run's work folder
    (--keep-work)``; "" when it kept nothing."""
    words = kept_words(record)
    return (("reused: " if record.get("finished") else "resumed: ") + words) if words else ""


def kept_words(record: dict) -> str:
    """What a job kept of an interrupted run (its :func:`saved_auto_work` record, or a
    movie's, or :func:`saved_embeddings`'), ``kept 5 of 20 slices an interrupted run
    finished, computed the other 15``; "" when it kept nothing (or discarded it)."""
    if record.get("discarded"):
        return ""
    unit, n, kept = record["unit"], record.get("of"), int(record.get("kept") or 0)
    within = record.get("within") or {}
    inner = (f" ({within['at']}: kept {within['kept']} of "
             f"{counted(within['of'], within.get('unit', 'slice'))})" if within.get("kept") else "")
    if kept:
        idle = int(record.get("unprompted") or 0)  # a movie's time points without prompts
        rest = (n - kept - idle) if n is not None else 0
        count = f"{kept}" + (f" of {counted(n, unit)}" if n is not None else
                             f" {unit}s" if kept > 1 else f" {unit}")
        head = (f"{count} from a finished run's work folder (--keep-work)"
                if record.get("finished") else f"kept {count} an interrupted run finished")
        return (head + (f", computed the other {rest}" if rest > 0 else "")
                + (f" ({counted(idle, unit)} without prompts)" if idle and rest > 0 else "")
                + inner)
    return f"an interrupted run finished none of its {unit}s{inner}" if inner else ""
