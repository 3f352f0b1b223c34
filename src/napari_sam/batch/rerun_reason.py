"""Why a batch job computes an output that is already there (:func:`rerun_reason`): the
line of each file and the summary say it, so a user sees that an earlier output was
replaced, and why (the model, a parameter, the input or the prompts changed, an older
napari-sam wrote it, ``--overwrite``). It words the decision of
:func:`napari_sam.batch.jobs.job_output_verdict` (the state and the check that decided it),
and decides nothing itself."""

from __future__ import annotations

import json
from pathlib import Path

from napari_sam.batch.jobs import OutputVerdict

#: What a signature key means when an output's sidecar does not record it (the default that
#: kept the signatures of earlier outputs): not a sign of an older napari-sam.
ABSENT_MEANS = {"tiling": "auto", "input_smoothing": 0.0}


#: The reason when no difference can be named.
UNMATCHED = "its sidecar does not match this run"


#: Parameters a reason names one by one; further ones are counted.
SHOWN_PARAMETERS = 3


def rerun_reason(verdict: OutputVerdict) -> str:
    """Why a job is run although its output's state is ``verdict.state``
    (:func:`~napari_sam.batch.jobs.job_output_verdict`, taken before the job marks its
    sidecar partial); "" for ``"missing"`` (nothing there).

    Returns e.g. ``"recomputed: parameters changed: points_per_side 16 -> 32"``,
    ``"recomputed: the model changed: demo:abc -> demo:def"``, ``"recomputed: the input
    changed"``, ``"recomputed: made by an older napari-sam whose sidecar lacks prompts"``,
    ``"resumed: an earlier run did not finish it"`` or ``"replaced: --overwrite"``.
    """
    state = verdict.state
    if state == "missing":
        return ""
    if state == "partial":
        return ("recomputed: the output was removed (its sidecar remained)"
                if verdict.cause == "removed" else "resumed: an earlier run did not finish it")
    if state == "changed":
        try:
            return "recomputed: " + change_reason(verdict)
        except Exception:  # only words: never fail the job for them  # noqa: BLE001
            return "recomputed: " + UNMATCHED
    command = verdict.recorded.get("command")
    what = {"edited": " (it was changed since napari-sam wrote it)",
            "other-command": f" (written by `napari-sam {command}`)"
            if command else " (an embedding store napari-sam marked)"}
    return "replaced: --overwrite" + what.get(state, "")


def change_reason(verdict: OutputVerdict) -> str:
    """What differs between a ``"changed"`` output and this run, as the check that decided
    it (:attr:`~napari_sam.batch.jobs.OutputVerdict.cause`) found it: the input (or a folder
    output's size), the signature, the model file."""
    if verdict.cause == "input":
        return verdict.input_problem
    if verdict.cause == "signature":
        return "; ".join(signature_changes(verdict)) or UNMATCHED
    if verdict.cause == "model" and verdict.model_ids is not None:
        old, new = verdict.model_ids
        return f"the model changed: {old or 'none recorded'} -> {new}"
    return UNMATCHED


def signature_changes(verdict: OutputVerdict) -> list[str]:
    """The keys in which the recorded signature differs from this run's
    (:attr:`~napari_sam.batch.jobs.OutputVerdict.differs`), as short phrases: the model, the
    prompts, parameters, and keys an older napari-sam did not record."""
    params, sig, keys = verdict.recorded, verdict.signature, verdict.differs
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
