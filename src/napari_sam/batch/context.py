"""What a batch job is: the settings shared by a batch (:class:`Context`), one input and its
output (:class:`Job`) and what happened to it (:class:`JobResult`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.models import model_key


@dataclass
class Context:
    """Settings shared by every job of a batch (picklable: it travels to dask workers).

    Attributes
    ----------
    command : {"auto", "segment", "embed"}
    model : str
        Registry name or checkpoint path, given to :func:`napari_sam.load_model`.
    out_dir : path
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    params : dict
        Algorithm parameters (recorded in the sidecar; a change makes a rerun recompute).
    axes : str, optional
        Override of the inputs' axes (``--axes``).
    channel : int, optional
        Channel to segment for multi-channel inputs.
    overwrite, preview, quiet, verbose : bool
    suffix, fmt : str
        Output naming (see :func:`output_path`).
    batch_size : int
        Slices per encoder call.
    keep_work : bool
        Keep ``.napari-sam-work`` data (embeddings) after an output is complete.
    embeddings_dir : path, optional
        Reuse embedding stores written by ``napari-sam embed`` (``<dir>/<stem>.zarr``).
    slice_workers : int
        Slices ``auto`` segments at once in this process, each in a thread with one torch
        thread (the CLI sets it from :func:`napari_sam.device.slice_workers`); the results do
        not depend on it.
    tiling : "auto", None, int or (int, int)
        How stacks with large slices are embedded (:func:`napari_sam.embed`'s ``tiling``):
        "auto" tiles slices longer than 1.5 model inputs, None never, an int is the halo,
        (window, halo) both (``--tiling``). Recorded in the signature unless "auto".
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``--precision``: the tasks of a cluster run use it on the workers
        (:func:`napari_sam.device.precision_in_this_thread`), whose environment is not the
        client's; "auto" leaves it to each machine.
    prompts_key : str, optional
        The digest of one job's prompts (:func:`prompts_digest`), set by :meth:`for_job`:
        the signature of a ``segment`` output records its own input's prompts, so editing
        them (or one file's rows of a prompts file) makes a rerun recompute that output.
    time_point : int, optional
        The time point of a ``TZYX`` movie this job segments, as its own volume
        (:mod:`napari_sam.batch.time_lapse`); None for every other input. Recorded in the
        signature when set.
    """

    command: str
    model: str = "demo"
    out_dir: str | os.PathLike = "."
    device: str = "auto"
    params: dict = field(default_factory=dict)
    axes: str | None = None
    channel: int | None = None
    overwrite: bool = False
    preview: bool = False
    quiet: bool = False
    verbose: bool = False
    suffix: str = "_labels"
    fmt: str = "tif"
    batch_size: int = 4
    keep_work: bool = False
    embeddings_dir: str | os.PathLike | None = None
    slice_workers: int = 1
    tiling: str | int | tuple[int, int] | None = "auto"
    precision: str = "auto"
    prompts_key: str | None = None
    time_point: int | None = None

    def for_job(self, job: Job) -> Context:
        """This context for one job: for ``segment``, with the digest of the job's own
        prompts (recorded in its signature); the context itself for other commands."""
        if self.command != "segment" or job.prompts is None:
            return self
        return replace(self, prompts_key=prompts_digest(job.prompts))

    def signature(self) -> dict:
        """What must match for a rerun to skip an output: command, model, parameters and, for
        a ``segment`` job's context (:meth:`for_job`), the digest of its prompts. (The model
        file's content is checked against the model id of the output metadata, by
        :func:`napari_sam.batch.jobs.output_state`.)"""
        sig = {"command": self.command, "model": model_key(self.model), "channel": self.channel,
               "axes": self.axes, **self.params}
        if self.prompts_key is not None:
            sig["prompts"] = self.prompts_key
        if self.time_point is not None:  # one time point of a movie (its own output)
            sig["time_point"] = int(self.time_point)
        if self.tiling != "auto":  # the default keeps the signatures of earlier outputs
            sig["tiling"] = self.tiling
        from napari_sam.models.registry import declared_input_smoothing

        smoothing = declared_input_smoothing(self.model) if self.model else 0.0
        if smoothing > 0:  # what the model sees; absent (as before) for models without it
            sig["input_smoothing"] = smoothing
        return json.loads(json.dumps(sig, default=nio.json_default, sort_keys=True))


def prompts_digest(prompts) -> str:
    """A digest of one input's prompts ``{object id: [slice prompt dict, ...]}`` (ids, slices,
    points, labels, boxes and stop markers, in the order given); for a session file's prompts
    also the bytes of the session file, whose operations a replay follows."""
    h = hashlib.sha256()
    canon = {str(k): v for k, v in prompts.items()}
    h.update(json.dumps(canon, default=nio.json_default, sort_keys=True).encode())
    session = getattr(prompts, "session", None)
    path = getattr(session, "path", None)
    if path is not None:
        try:
            h.update(Path(path).read_bytes())
        except OSError:
            h.update(str(path).encode())
    return h.hexdigest()[:16]


@dataclass
class Job:
    """One input file and its output. ``prompts`` is used by ``segment``; ``subfolder`` is
    the input's folder below the folder it was found in, which its output (and ``embed``
    store) mirrors. ``part`` names the part of the input a job segments (one time point of
    a movie: ``"t=3 of 10"``), shown after the input's name in its notes and progress
    bars; "" for a whole input."""

    input: Path
    output: Path
    prompts: dict | None = None
    subfolder: Path = Path(".")
    part: str = ""

    @property
    def name(self) -> str:
        return f"{self.input.name} ({self.part})" if self.part else self.input.name


@dataclass
class JobResult:
    """What happened to one input.

    ``status`` is ``"done"``, ``"skipped"`` (already complete), ``"busy"`` (another process
    was writing the output: nothing was done, not ok) or ``"failed"``; ``reason`` says why
    for the last three; ``objects`` counts the objects (label
    outputs) or slices (embeddings); ``model_loaded`` tells whether this job had to load the
    model in its process (False when the process's model cache already held it); ``pid`` is
    the process that ran it. ``details`` of a job that ran hold ``rerun_reason`` (why an
    output already there was computed again, "" when there was none:
    :func:`napari_sam.batch.rerun_reason.rerun_reason`, or what it kept of an interrupted
    run: :func:`napari_sam.batch.saved_work.resume_reason`), ``replaced`` (whether an
    earlier output was there, which a ``"done"`` job replaced), ``resume`` where it kept an
    interrupted run's work (a :mod:`napari_sam.batch.saved_work` record: ``kept``, ``of``,
    ``unit``, ``discarded``) and ``unlockable`` (output folder, why) where the output folder's
    file system cannot lock.
    """

    input: str
    output: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    objects: int | None = None
    model_loaded: bool = False
    pid: int = 0
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")
