"""Why a batch job computes an output that is already there (:func:`rerun_reason`): the
line of each file and the summary say it, so a user sees that an earlier output was
replaced, and why (the model, a parameter, the input or the prompts changed, an older
napari-sam wrote it, ``--overwrite``). It only explains the decision of
:func:`napari_sam.batch.jobs.job_output_state`, which it never changes."""

from __future__ import annotations

import json
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.jobs import model_file_ids

#: What a signature key means when an output's sidecar does not record it (the default that
#: kept the signatures of earlier outputs): not a sign of an older napari-sam.
ABSENT_MEANS = {"tiling": "auto", "input_smoothing": 0.0}


#: The reason when no difference can be named.
UNMATCHED = "its sidecar does not match this run"


#: Parameters a reason names one by one; further ones are counted.
SHOWN_PARAMETERS = 3


def rerun_reason(job: Job, ctx: Context, state: str) -> str:
    """Why ``job`` (its context ``ctx``, with its prompts: :meth:`Context.for_job`) is run
    although its output's :func:`~napari_sam.batch.jobs.output_state` is ``state``; "" for
    ``"missing"`` (nothing there). Read before the job marks its sidecar partial.

    Returns e.g. ``"recomputed: parameters changed: points_per_side 16 -> 32"``,
    ``"recomputed: the model changed: demo:abc -> demo:def"``, ``"recomputed: the input
    changed"``, ``"recomputed: made by an older napari-sam whose sidecar lacks prompts"``,
    ``"resumed: an earlier run did not finish it"`` or ``"replaced: --overwrite"``.
    """
    if state == "missing":
        return ""
    meta = nio.read_output_metadata(job.output) or {}
    if state == "partial" and meta.get("status") == "complete":  # (output_state's order)
        return "recomputed: the output was removed (its sidecar remained)"
    if state == "partial":
        return "resumed: an earlier run did not finish it"
    params = meta.get("parameters") if isinstance(meta.get("parameters"), dict) else {}
    if state == "changed":
        try:
            return "recomputed: " + change_reason(job, ctx, meta, params)
        except Exception:  # only words: never fail the job for them  # noqa: BLE001
            return "recomputed: " + UNMATCHED
    what = {"edited": " (it was changed since napari-sam wrote it)",
            "other-command": f" (written by `napari-sam {params.get('command')}`)"
            if params.get("command") else " (an embedding store napari-sam marked)"}
    return "replaced: --overwrite" + what.get(state, "")


def change_reason(job: Job, ctx: Context, meta: dict, params: dict) -> str:
    """What differs between ``job``'s complete output (sidecar ``meta``, its ``parameters``
    ``params``) and this run, in the order :func:`~napari_sam.batch.jobs.output_state`
    checks it: the input (or a folder output's size), the signature, the model file."""
    if not nio.is_complete(job.output, job.input):
        return input_change(job, meta)
    sig = ctx.signature()
    parts = signature_changes(job, ctx, params, sig)
    if parts:
        return "; ".join(parts)
    ids = model_file_ids(meta, sig)
    if ids is not None and ids[0] != ids[1]:
        return f"the model changed: {ids[0] or 'none recorded'} -> {ids[1]}"
    return UNMATCHED


def input_change(job: Job, meta: dict) -> str:
    """Why :func:`napari_sam.io.is_complete` says no: the input or the output's size."""
    rec = meta.get("input")
    if not isinstance(rec, dict):
        return "its sidecar records no input"
    try:
        now = nio.input_fingerprint(job.input)
    except OSError:
        return "the input changed"
    if any(rec.get(k) != now.get(k) for k in ("size", "mtime_ns")) or (
            rec.get("sample_hash") is not None and rec["sample_hash"] != now["sample_hash"]):
        return "the input changed"
    return "the output's size differs from its sidecar's"


def signature_changes(job: Job, ctx: Context, params: dict, sig: dict) -> list[str]:
    """The differences of the recorded signature ``params`` and this run's ``sig``, as
    short phrases: the model, the prompts, parameters, and keys an older napari-sam did not
    record. ``channel`` is left out for an input without a channel axis (it does not apply:
    :func:`~napari_sam.batch.jobs.job_output_state`)."""
    keys = [k for k in sorted(set(params) | set(sig))
            if params.get(k, ABSENT_MEANS.get(k)) != sig.get(k, ABSENT_MEANS.get(k))]
    if "channel" in keys:
        from napari_sam.batch.reading import channel_applies

        if not channel_applies(job.input, ctx):
            keys.remove("channel")
    parts = []
    if "model" in keys:
        old, new = model_names(params.get("model"), sig.get("model"))
        parts.append(f"the model changed: {old} -> {new}")
    lacks = [k for k in keys if k not in params and k not in ABSENT_MEANS]
    if "prompts" in keys and "prompts" not in lacks:
        parts.append("the prompts changed")
    changed = [k for k in keys if k not in ("model", "prompts", "command") and k not in lacks]
    if changed:
        shown = [f"{k} {value_text(params.get(k, ABSENT_MEANS.get(k)), k)} -> "
                 f"{value_text(sig.get(k, ABSENT_MEANS.get(k)), k)}"
                 for k in changed[:SHOWN_PARAMETERS]]
        more = len(changed) - SHOWN_PARAMETERS
        parts.append("parameters changed: " + ", ".join(shown)
                     + (f" and {more} more" if more > 0 else ""))
    if lacks:
        parts.append("made by an older napari-sam whose sidecar lacks " + ", ".join(lacks))
    return parts


def model_names(old, new) -> tuple[str, str]:
    """Two model keys as a line shows them: checkpoint paths by file name unless the names
    are the same (then in full)."""
    old, new = str(old), str(new)
    short = Path(old).name, Path(new).name
    return short if short[0] != short[1] else (old, new)


def value_text(value, key: str = "", width: int = 24) -> str:
    """A recorded value of parameter ``key`` in a few characters (long ones lose their end;
    None as the CLI says it: ``off`` for ``tiling``, else ``none``)."""
    if value is None:
        return "off" if key == "tiling" else "none"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"
