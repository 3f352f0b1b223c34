"""Session files in the annotation session: the commit log, save, load, autosave, resume,
and the propagation trace's fixes.

A mixin of :class:`~napari_sam.annotate.annotation_session.AnnotationSession`. The file
format, checks and replay are :mod:`napari_sam.session`'s; this module turns the session's
state into a :class:`~napari_sam.session.Session` and back.

The log holds the commits in effect into one labels target, in order: a commit appends, undo
moves the last one to a redo list, redo moves it back. When commits go into another labels
target, the log starts again there (with its content as the session's ``base``), unless
that target holds exactly the autosaved session's labels (the dock closed and opened again):
then that session's log goes on.
After every commit, undo and redo the session is autosaved next to the image file
(:func:`napari_sam.session.session_file_for`) when the image came from a file; when the
image's folder is not writable, under the cache folder instead (where:
:mod:`napari_sam.annotate.session_places`), and the status line says where, once. Autosave never
replaces a session file it did not write or load for this log: it keeps it first under a dated
name (:func:`napari_sam.session.keep_aside`) and the status line says so. Two images of one file
(napari opens a file with a channel axis as one layer per channel) each have their own
session file (:meth:`SessionPlaces.own_session_file`).

In the GUI, the autosave of large labels is written on a worker thread
(:mod:`napari_sam.annotate.autosave_writer`): the UI thread only copies the labels. What
reads or replaces the autosave file (saving, loading, resuming, another labels target) waits
for the write under way first; what the write has to say (a file kept aside, a fallback
folder, a failure: :mod:`.autosave_retry`) reaches the UI thread through the writer's
``post``.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_sam import session as S
from napari_sam.words import counted

from .autosave_writer import AutosaveWriter
from .errors import UserError, sentence
from .live_session_files import LiveSessionFiles
from .memory_sessions import memory_autosave_words, prune_memory_sessions, refuse_memory_folder
from .movie_sessions import MovieSessions
from .prompt_groups import POINT_OBJECT, inside_image
from .session_claims import SessionClaims, claim_holder
from .session_compare import holds_the_same_work, same_prompts
from .session_places import SessionPlaces, fallback_session_file
from .session_records import ImageRecords
from .split_sessions import other_sessions_note, resume_offer, session_holding

__all__ = ["SessionLog"]


@dataclass
class _AutosaveJob:
    """One autosave: where, what (the session's state, labels copied), and the names and log
    generation it was made for, read on the UI thread (the write may run on a worker)."""

    target: Path
    fallback: Path
    state: S.Session
    generation: int
    labels_name: str | None
    image_name: str
    image_folder: Path | None  # None: an image without a file (autosaved by its pixels)
    inline: bool  # written on the calling thread: its notes go into this status line


class SessionLog(SessionPlaces, LiveSessionFiles, MovieSessions):
    """Session log, files and trace (needs the session's attributes)."""

    # ------------------------------------------------------------------ hooks
    def notify_session_loaded(self, session: S.Session) -> None:
        """A session file was loaded (the GUI picks its model)."""

    def notify_resume(self, path: str, summary: str) -> None:
        """An autosaved session of this image exists at ``path`` (see :meth:`resume`);
        ``summary``: the offer to resume it, naming the other sessions of the image."""

    def notify_trace(self, trace: dict | None) -> None:
        """The propagation trace changed."""

    def forget_trace(self) -> None:
        """Drop the propagation trace, another image being picked: the last image's stayed
        in the dock's trace panel, told in the words of the new image's stack axis, and was
        saved with the new image's session."""
        if self.trace is not None:
            self.trace = None
            self.notify_trace(None)

    def hash_pending(self) -> bool:
        """Whether the image's pixel hash (which names and checks its autosave) is read off
        this thread, to come (the GUI: a lazy image without a file, :mod:`napari_sam._qt.
        hashed_autosave`): the autosave then waits for it (:meth:`autosave_when_hashed`).
        Here: False, the hash is read when needed."""
        return False

    def autosave_when_hashed(self) -> None:
        """Autosave once :meth:`hash_pending` is over (the GUI calls :meth:`autosave_now`
        then); here at once."""
        self.autosave_now()

    def _init_session(self) -> None:
        self.log: list[dict] = []
        self._redo_log: list[dict] = []
        self._log_target = None
        self._log_base: np.ndarray | None = None
        self.trace: dict | None = None
        self.autosave = True
        self.session_path: Path | None = None
        self._declined: set[str] = set()
        self._volume_request = None  # (prompts, options, {i: object key}) of the preview
        self._digests: dict = {}  # the images' hashes (SessionPlaces._digest)
        self._autosave_said: set[str] = set()  # fallback places the status has named
        self._autosave_note = ""
        self._log_generation = 0  # +1 whenever the log starts again (another target, a load)
        self._autosave_owned: tuple | None = None  # (path, generation, stat) written or loaded
        self._kept_aside: Path | None = None  # where an earlier autosave was kept
        self.autosave_writer = AutosaveWriter()  # the GUI gives it a post: large ones threaded
        self._autosave_broken = False  # a write failed; autosave goes off (posted) meanwhile
        self._autosave_off_why: str | None = None  # why it went off (said at every commit)
        self._base_digest: tuple[np.ndarray, str] | None = None  # (log base, its labels_hash)
        self._claims = SessionClaims()  # the session files this session autosaves into
        self._image_records = ImageRecords()  # session files' image records, parsed once
        self._continue_later = None  # (generation, base, shape, dtype): _continue_autosave

    # ------------------------------------------------------------------ the log
    def _log_before_commit(self, target, data: np.ndarray, held: S.Session | None = None) -> None:
        """Before committing into ``target`` ((Z, Y, X) ``data``): a new target starts a
        new log, with its content as the base, unless the autosaved session holds exactly
        that content (the dock was closed and opened again; ``held``: that session, already
        read): its log goes on."""
        if target is self._log_target:
            return
        if self.is_movie():  # (the labels of every time point: a movie's session holds them)
            data = self.session_labels(target)
        self.wait_autosave()  # the file holds the earlier log's newest state first
        self._log_target = target
        self._log_generation += 1
        self.log, self._redo_log = [], []
        self._log_base = _frozen(np.array(data, copy=True)) if data.any() else None
        self._continue_autosave(data, held)

    def autosave_holding(self, data: np.ndarray) -> S.Session | None:
        """The autosaved session of this image when its labels are exactly ``data`` ((Z, Y, X)
        labels, a movie's (T, Z, Y, X)) and it was made on this image's pixels, else None.
        The dock uses it to find, after it was closed and opened again, the labels layer its
        log went into (even renamed)."""
        found = self.autosave_holder([data])
        return None if found is None else found[1]

    def autosave_holder(self, candidates) -> tuple[int, S.Session] | None:
        """Which of ``candidates`` ((Z, Y, X) labels arrays) holds exactly the labels of this
        image's autosaved session (made on this image's pixels), in its file or in an
        alternate of it (a dock's while another had the file): ``(index, session)`` of the
        first one (the session's ``path``: its file), else None. Each file is read once."""
        self.wait_autosave()
        if self.image_path() is None:  # (by its pixels: not hashed while none was autosaved)
            found = self._session_files()
        else:
            path = self.autosave_path()
            found = [] if path is None else self._session_files([path])
        files = [p for p in found if not self._claims.taken(p)]  # (another's live log)
        return session_holding(files, candidates, self._hash()) if files else None

    def _continue_autosave(self, data: np.ndarray, held: S.Session | None = None) -> None:
        """Take the log and base of the autosaved session of this image when it holds
        ``data`` (:meth:`autosave_holding`, or ``held`` when the caller read it): the file
        goes on, it is not replaced."""
        if held is None and self.hash_pending():  # looked for once hashed (_autosave)
            self._continue_later = (self._log_generation, self._log_base, data.shape, data.dtype)
            return
        sess = self.autosave_holding(data) if held is None else held
        if sess is None:
            return  # (its log: before the commits made while the hash was read)
        self.log, self._log_base = list(sess.operations) + self.log, _frozen(sess.base)
        self._claims.use(sess.path)  # (open here, autosave on or off: not pruned)
        if not self.autosave or self._claims.hold(sess.path):  # (an alternate: goes on there)
            self._own_autosave(sess.path)

    def _own_autosave(self, path: Path, job: _AutosaveJob | None = None) -> None:
        """The file at ``path`` holds this log (written or loaded; ``job``: the autosave
        that wrote it, with the generation and labels name it was made for): autosave may
        replace it. The name of the labels its commits went into is kept for
        :meth:`_written_for`."""
        st = path.stat()
        if job is None:
            target = self._log_target
            name = self.labels_name(target) if target is not None else None
            generation = self._log_generation
        else:
            name, generation = job.labels_name, job.generation
        self._autosave_owned = (str(path), generation, (st.st_mtime_ns, st.st_size), name)

    def _owns_autosave(self, path: Path, generation: int | None = None) -> bool:
        """Whether this log (``generation``: that log's, default the current one) wrote or
        loaded the file at ``path`` as it is now."""
        own = self._autosave_owned
        generation = self._log_generation if generation is None else generation
        if own is None or own[0] != str(path) or own[1] != generation:
            return False
        st = path.stat()
        return own[2] == (st.st_mtime_ns, st.st_size)

    def _written_for(self, path: Path) -> str | None:
        """The labels whose commits this dock's earlier log wrote to ``path``, while the file
        is as it wrote it (None: another dock's or process's file, or one it did not write;
        "": labels without a name)."""
        own = self._autosave_owned
        if own is None or own[0] != str(path):
            return None
        st = path.stat()
        return (own[3] or "") if own[2] == (st.st_mtime_ns, st.st_size) else None

    def _log_commit(self, objects_all, written, commit) -> None:
        """Record a commit: ``objects_all`` the previews (or volume object ids) decoded,
        ``written`` the (index, id refined) pairs the commit wrote, in order. The caller
        autosaves (:meth:`autosave_now`) once the committed prompts are cleared, so that
        they are not saved as pending prompts."""
        if self.volume is not None:
            prompts, options, _ = self._volume_request
            op = S.volume_operation(prompts, options, written, overwrite=self.overwrite,
                                    ids=commit.ids)
        else:
            mask_label = self._refine_id(None) if any(p.mask_prompt for p in objects_all) else 0
            op = S.slice_operation(objects_all[0].z, objects_all, written,
                                   overwrite=self.overwrite, mask_label=mask_label,
                                   ids=commit.ids)
        if self.model_contrast() is not None:  # the layer's limits (absent: the percentiles)
            op["contrast_limits"] = list(self.model_contrast())
        self.log.append(self.record_time_point(op))
        self._redo_log.clear()

    def autosave_now(self) -> None:
        """Write the autosave (if on) as the session stands (large labels: on the autosave
        writer's worker thread, when it has one)."""
        self._autosave()

    def wait_autosave(self, timeout: float | None = None) -> bool:
        """Wait for the autosave under way (and the one waiting) to be written; False when
        ``timeout`` (seconds) ran out first."""
        return self.autosave_writer.wait(timeout)

    def _base_hash(self, base: np.ndarray | None) -> str | None:
        """:func:`napari_sam.session.labels_hash` of ``base`` (None: None), hashed once per log
        base: the base is read-only (:func:`_frozen`) and replaced, never changed, so its
        hash stays true (it names the base's TIFF and checks it when read). Each autosave
        hashed it again: about 2 s per GB, on the autosave worker."""
        if base is None:
            return None
        known = self._base_digest
        if known is not None and known[0] is base and not base.flags.writeable:
            return known[1]
        digest = S.session_labels_hash(base)  # (a movie's: one per time point)
        self._base_digest = (base, digest)
        return digest

    def _log_step(self, commit, redo: bool) -> None:
        if commit.target is not self._log_target:
            return
        src, dst = (self._redo_log, self.log) if redo else (self.log, self._redo_log)
        if src:
            dst.append(src.pop())
            self._autosave()

    # ------------------------------------------------------------------ state
    def _hash(self) -> str:
        # the stack SAM sees: another channel of the same layer data is another image
        return self._digest("hash")

    def _pending_prompts(self) -> dict:
        """The uncommitted prompts on the image (one beside it would make the file refused
        when loaded: it says a prompt lies outside the image)."""
        if self.is_movie():  # (those of every time point, each with its own)
            return self.movie_pending()
        pts, lab, boxes, _ = inside_image(*self.prompt_arrays(), self.source.shape)
        return {"points": pts.tolist(), "labels": [int(v) for v in lab], "boxes": boxes.tolist()}

    def session_state(self, copy=None) -> S.Session:
        """The session as it stands: image, model, settings, the log, pending prompts, the
        committed labels and the last trace. ``copy(labels)`` copies the labels (default
        ``np.array(labels, copy=True)``; a background autosave copies them itself, last)."""
        src = self._require_image()
        choice, pred = self.model_choice, self.predictor
        path = self.image_path()
        image = {"path": str(Path(path).absolute()) if path else None, "name": self.image_name(),
                 "hash": self._hash(),
                 "shape": list(src.shape), "layer_shape": list(src.layer_shape),
                 "channel_axis": src.channel_axis, "channel": src.channel, "rgb": bool(src.rgb),
                 "dtype": str(src.stack.dtype),
                 "contrast_limits": [float(v) for v in self.contrast_limits()],
                 "embedding_contrast_limits": None if self.emb is None else
                 [float(v) for v in self.emb.contrast_limits],
                 "model_contrast_limits": self.model_contrast() and list(self.model_contrast()),
                 **self.movie_record()}
        model = {"name": None if choice is None else choice.key,
                 "is_file": bool(choice is not None and choice.is_file),
                 "id": None if pred is None else getattr(pred.model, "model_id", None),
                 "device": str(pred.device) if pred is not None else self.device,
                 "precision": None if pred is None else pred.precision}
        tiling = getattr(self.emb, "tiling", None)  # the windows clicks were decoded in
        settings = {"axis_kind": self.axis_kind, "overwrite": bool(self.overwrite),
                    "store": self.store, "tiling": None if tiling is None else tiling.key()}
        target = self._log_target
        labels = None
        if target is not None and self.target_alive(target):
            labels = (copy or functools.partial(np.array, copy=True))(self.session_labels(target))
        return S.Session(image=image, model=model, settings=settings,
                         operations=list(self.log), pending=self._pending_prompts(), labels=labels,
                         base=self._log_base, trace=self.trace)

    # ------------------------------------------------------------------ files
    def save_session(self, path) -> Path:
        """Write the session to ``path`` (JSON, labels beside it; a name too long shortened:
        :func:`~napari_sam.session.saved_session_file`); returns the path written."""
        asked, path = path, S.saved_session_file(path)  # (".json" added, a long name fitted)
        self.refuse_live_file(path, "saved")  # another live session's autosave
        refuse_memory_folder(path)  # (its autosaves are removed after 30 days)
        self.wait_autosave()  # (it may write to this path, or the path it keeps aside)
        try:
            state = self.session_state()
            S.write_session(state, path, base_hash=self._base_hash(state.base))
        except OSError as err:
            blocker = _file_in_the_way(path) if err.errno in (errno.EEXIST, errno.ENOTDIR) \
                else None  # (the OS says "File exists" for a file named as a folder)
            if blocker is not None:
                raise UserError(f"Could not save the session to {path}: {blocker} is a file, "
                                "not a folder. Pick a folder.") from None
            full = err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
            raise UserError(f"Could not save the session to {path}: {err.strerror or err}. " + (
                "Free space there, or pick a folder on another disk." if full else
                "Pick a folder you can write to.")) from None
        except S.SessionError as err:  # the image itself, or a file that is no session
            raise UserError(sentence(err)) from None
        auto = self.autosave_path()
        if auto is not None and path.absolute() == auto.absolute():  # autosave goes on there
            self._own_autosave(auto)
        self.session_path = path
        self._say(f"Saved the session ({len(self.log)} commits) to {path}"
                  f"{S.shortened_note(asked, path)}.")
        return path

    def _autosave(self) -> None:
        """Autosave the session as it stands: labels of :data:`~napari_sam.annotate.
        autosave_writer.BACKGROUND_BYTES` or more on the writer's worker thread (when it has
        one), after the write under way; smaller ones here, also after it."""
        if not self.autosave or self._autosave_broken:
            return
        if self.hash_pending():  # (the GUI: the commit is not made to wait for the read)
            self.autosave_when_hashed()
            return
        later, self._continue_later = self._continue_later, None
        if later is not None and later[0] == self._log_generation:  # the target's content
            self._continue_autosave(np.zeros(later[2], later[3]) if later[1] is None
                                    else later[1])  # (read before the log's first commit)
        target = self.autosave_path()
        if target is None:
            return
        self._claims.resume()  # (after release_session_file: claimed and kept again)
        writer = self.autosave_writer
        log_target = self._log_target
        labels = (self.session_labels(log_target) if log_target is not None
                  and self.target_alive(log_target) else None)
        inline, in_place = writer.plan(labels)
        path = self.image_path()
        if inline:
            writer.wait()
        state = self.session_state(copy=None if inline and not in_place else _as_is)
        job = _AutosaveJob(
            target=target, state=state,
            fallback=target if path is None else self.own_session_file(
                fallback_session_file(path)),
            generation=self._log_generation,
            labels_name=None if log_target is None else self.labels_name(log_target),
            image_name=self.image_name(), image_folder=None if path is None else path.parent,
            inline=inline)
        if inline:
            self._autosave_job(job)
        else:  # copied last: the copy drops the write waiting (it takes its buffer), so
            # nothing that may fail comes between it and the submit that replaces that write
            state.labels = writer.snapshot(state.labels)
            writer.submit(functools.partial(self._autosave_job, job), state.labels)

    def _autosave_job(self, job: _AutosaveJob) -> None:
        """Write ``job`` (on the calling thread or the writer's worker): to its target, else
        (the folder looked writable, but is not, or the disk is full) to the fallback; a
        failure turns autosave off with a warning (through the writer's ``post``)."""
        if self._autosave_broken:  # an earlier write failed: autosave is going off
            return
        target, written = job.target, None
        try:
            try:
                written, holder = self._write_autosave(target, job)
            except OSError:
                if target == job.fallback:
                    raise
                target = job.fallback
                written, holder = self._write_autosave(target, job)
        except Exception as err:  # noqa: BLE001 - any failure turns autosave off, said once
            self._autosave_broken = True
            why = err.strerror or err if isinstance(err, OSError) else err
            where = target if target == job.target else f"{job.target} and to {target}"  # both
            self._autosave_said_later(job, functools.partial(self._autosave_failed, job, where,
                                                             why))
            return
        finally:
            self._claims.done(written is not None)
        if written != target and holder and str(written) not in self._autosave_said:
            self._autosave_said.add(str(written))
            said = (f" The session file {{}} is being autosaved by {holder}: this session is "
                    "autosaved in {} instead (Resume finds it there).")  # (the line: names)
            self._autosave_news(job, said.format(target.name, f"{written.name} beside it"),
                                info=said.format(target, written))
        if target == job.fallback and str(target) not in self._autosave_said:
            self._autosave_said.add(str(target))
            if job.image_folder is None:  # (once per image: the old ones are pruned then)
                prune_memory_sessions(keep=target.parent)
                self._autosave_news(job, " " + memory_autosave_words(job.image_name, written))
            else:
                self._autosave_news(job, f" The folder of '{job.image_name}' ({job.image_folder}) "
                                         f"is not writable: the session is autosaved in {target}.")

    def _autosave_failed(self, job: _AutosaveJob, target: Path | str, why) -> None:
        """Autosave goes off: a warning naming ``target`` (both files tried), and the status
        line (the commit's when written at once, else the one shown) says so too (the GUI
        unticks its Autosave box then)."""
        self.autosave, self._autosave_broken = False, False
        self._autosave_off_why = str(why)
        text = (f"Autosave to {target} failed ({why}); autosave is off. Use 'Save session' to "
                "save elsewhere.")
        self.notify_warning(text)
        if job.inline:
            self._autosave_note += f" {text}"
        else:
            self._say(f"{self.status} {text}")

    def _autosave_said_later(self, job: _AutosaveJob, fn) -> None:
        """Run ``fn()`` now when ``job`` is written on the calling thread, else on the UI
        thread (the writer's ``post``)."""
        if job.inline or self.autosave_writer.post is None:
            fn()
        else:
            self.autosave_writer.post(fn)

    def _autosave_news(self, job: _AutosaveJob, text: str, info: bool | str = False) -> None:
        """What an autosave has to say: in the status line of the commit (undo, redo) that
        asked for it when written at once (:meth:`take_autosave_note`), else added to the
        status line when the write ends, and a notification (the next news replaces that
        line, maybe before it was read); ``info``: a notification in both cases (a text: that
        notification's, the full paths the status line leaves out)."""
        def say():
            if job.inline:
                self._autosave_note += text
            else:
                self._say(f"{self.status}{text}")
            if info or not job.inline:
                self.notify_info((info if isinstance(info, str) else text).strip())

        self._autosave_said_later(job, say)

    def _write_autosave(self, target: Path, job: _AutosaveJob) -> tuple[Path, str]:
        """Write ``job``'s session to ``target``, or to an alternate of it while another
        live session autosaves there (:mod:`napari_sam.annotate.session_claims`); returns
        the file written and who holds ``target`` when it is not ``target``. A session in
        the file written that this log did not write or load (not resumed, a session ended
        before) is first kept under a dated name (:func:`napari_sam.session.keep_aside`),
        and the status says so."""
        target.parent.mkdir(parents=True, exist_ok=True)
        writable = self._claims.writable(target)
        holder = "" if writable == target or not self._claims.taken(target) else (
            claim_holder(target))  # ("": an alternate it resumed, with the file free)
        target = writable
        kept, state, mine = None, job.state, None
        if target.is_file() and not self._owns_autosave(target, job.generation):
            S.check_session_path(state, target)  # a file there that is no session: refused
            try:
                earlier = S.read_session(target, load_labels=False).summary()
            except S.SessionError:
                earlier = "unreadable"
            mine = self._written_for(target)  # this dock's, for other labels
            kept = S.keep_aside(target)
        S.write_session(state, target, base_hash=self._base_hash(state.base),
                        labels_hashes=self.labels_hashes(state.labels))
        self._own_autosave(target, job)
        self._image_records.read(target)  # (here, so that the UI thread need not parse it)
        if kept is not None:
            self._kept_aside = kept
            opens = "(File > IO Utilities > Load SAM session... opens it)"
            text = (f" An earlier session of '{job.image_name}' ({earlier}) was autosaved "
                    f"in {target.name} and not resumed: it is kept as {kept.name} beside it "
                    f"{opens}; this session is autosaved in {target.name}.") if mine is None \
                else (f" The session of the commits into '{mine}' ({earlier}) is kept as "
                      f"{kept.name} {opens}: the commits now go into "
                      f"'{job.labels_name}', whose session is autosaved in {target.name}.")
            self._autosave_news(job, text, info=True)
        return target, holder

    def release_session_file(self) -> None:
        """Let the session files this session autosaves into go, once the write under way
        ends (the dock closing; a script done with the session): another session may
        autosave there now. A later autosave of this session claims its file again."""
        self._claims.release()

    def take_autosave_note(self) -> str:
        """" The folder of ... is not writable: the session is autosaved in ...", once
        after autosave first wrote under the cache folder for an image ("" otherwise); while
        autosave is off after a failed write, a reminder that it is."""
        note, self._autosave_note = self._autosave_note, ""
        if self.autosave:
            self._autosave_off_why = None
        elif self._autosave_off_why and "autosave is off" not in note:  # until turned on
            note += (f" Autosave is still off since it failed ({self._autosave_off_why}): "
                     "turn it on again once it can write (space, permissions; it saves at "
                     "once), or use 'Save session'.")
        return note

    def autosave_on_again(self) -> None:
        """Autosave turned on (the dock's box ticked again, e.g. after a failed write and
        space freed): the commits made while it was off are autosaved at once, not only at
        the next commit; the status says when that write fails too. A lazy image whose
        pixel hash is read off this thread (:meth:`hash_pending`): written once it is."""
        self.autosave = True
        if self.log and self.hash_pending():  # (its autosave_path would read it here)
            self._autosave()
            self._say(f"Autosave is on: the session ({counted(len(self.log), 'commit')}) is "
                      "autosaved once the image's pixels are read.")
        elif self.log and self.autosave_path() is not None:
            self._autosave()
            note = self.take_autosave_note().strip()  # (a failure: the warning's text)
            self._say(note or f"Autosave is on: the session ({counted(len(self.log), 'commit')})"
                              " is autosaved.")

    def load_session(self, path) -> S.Session:
        """Restore a session file onto the current image: its labels into new target labels
        (commits continue there; the GUI's new labels layer), its pending prompts, its model
        and trace. Everything is checked first; a bad file changes nothing."""
        self.wait_autosave()  # (the file may be the autosave being written)
        self.refuse_live_file(path, "loaded")  # another live session's autosave
        try:
            sess = S.read_session(path, sweep_temporaries=True)
            src = self._require_image()
            self.refuse_other_movie(sess, path)
            S.check_image(sess, src.shape, what=f"'{self.image_name()}'", axes_hint=False)
            model_note = self._model_for(sess)
        except S.SessionError as err:
            raise UserError(sentence(err)) from None
        pending = sess.pending or {}
        mine = self.prompt_arrays()
        own = same_prompts(self._pending_prompts(), pending)  # loaded twice: nothing lost
        held, where = self.prompts_held()  # (a movie's: of every time point)
        if (pending.get("points") or pending.get("boxes")) and held and not own:
            raise UserError(
                f"Not loaded: {Path(path).name} has uncommitted prompts of its own, and those "
                f"on the image now{where} would be lost: commit them (Shift+C) or clear them "
                "(Shift+X), then load the session.")
        differs = S.image_differences(sess, content_hash=self._hash(), name=self.image_name(),
                                      what=f"'{self.image_name()}'",
                                      channels=(src.channel_axis, src.channel))
        before = self.model_choice
        self._restore(sess)
        now = self.model_choice
        if not model_note and before is not None and now is not None and (
                _model_key(now) != _model_key(before)):  # the dock picks the session's model
            model_note = (f" It was made with {now.key}, which is now picked in 'Model' (was "
                          f"{before.key}){_not_downloaded(now)}.")
        self._log_generation += 1
        self.session_path = Path(path)
        auto = self.autosave_path()
        resumed = next((p for p in ([] if auto is None else self._session_files([auto]))
                        if p.absolute() == self.session_path.absolute()), None)
        if resumed is not None:  # open here, autosave on or off: not pruned meanwhile
            self._claims.use(resumed)
        if resumed is not None and (not self.autosave or self._claims.hold(resumed)):
            # (an alternate too; autosave off: no claim, the next autosave's claims it)
            self._own_autosave(resumed)  # its log goes on in that file
        elif auto is not None and holds_the_same_work(auto, sess):  # a copy of it
            self._own_autosave(auto)
        if differs:
            text = (f"Loaded the session {Path(path).name} ({sess.summary()}). Note: "
                    + "; ".join(differs) + ". Its labels are placed as they were saved: check "
                    "them against this image; if it is the wrong one, delete the new labels "
                    "layer and load the session onto the image it was made for (to rerun its "
                    "prompts on this image instead: napari-sam segment IMAGE --prompts "
                    "SESSION).")
            self.notify_warning(text)
        else:
            text = (f"Loaded the session {Path(path).name} ({sess.summary()}); continue where "
                    "it stopped.")
            self.notify_info(text)
        if model_note:
            text += model_note
            self.notify_warning(model_note.strip())
        self._say(text + self.pending_elsewhere(pending))  # (a movie's at other time points)
        here = self.pending_here(pending)
        first = (here.get("points") or here.get("boxes") or [None])[0]
        if first is not None:  # show where the work stopped (with its preview when live)
            self.go_to_slice(int(round(first[0])))
        if self.live and (first is not None or len(mine[0]) + len(mine[2])):
            # its prompts, or the prompts kept, previewed now: the preview's line (also one
            # computed in a job) follows this one; with no preview to follow, no later
            # preview may bring it back
            self.preview_lead = text
            self.refresh_preview()
        else:  # nor a line from before the load
            self.preview_lead = ""
        return sess

    def _model_for(self, sess: S.Session) -> str:
        """Check the session's model; a checkpoint that is not at its recorded path any more
        (moved, renamed, deleted) is replaced by the model picked now, which ``sess`` then
        names (so the dock keeps it), and the note returned says so ("" when the session's
        own model is used). Raises ``SessionError`` when no model is picked."""
        reason = S.model_unavailable(sess)
        if not reason:
            return ""
        if self.model_choice is None:
            S.check_model(sess)  # raises, with what to do
        gone = str(sess.model.get("name"))
        now = self.model_choice
        sess.model = {**sess.model, "name": now.key, "is_file": now.is_file,
                      "replaced": gone}
        return (f" Its model {gone!r} is {reason}. Its labels and prompts are loaded, and what "
                f"you click now is decoded with the model picked, {now.key}.")

    def _restore(self, sess: S.Session) -> None:
        settings = sess.settings or {}
        if isinstance(settings.get("overwrite"), bool):
            self.overwrite = settings["overwrite"]
        if settings.get("axis_kind") in ("z", "t"):
            self.axis_kind = settings["axis_kind"]
        self.notify_session_loaded(sess)  # the dock shows them and picks the session's model
        self.restore_contrast(sess.image.get("model_contrast_limits"))
        target, now = None, self.held_labels()
        if sess.labels is not None and now is not None and np.array_equal(now, sess.labels):
            target = self.commit_target()[0]  # loaded twice, or resumed after loading: no copy
        elif sess.labels is not None:
            target = self.new_target(np.ascontiguousarray(sess.labels))
        self.log, self._redo_log = list(sess.operations), []
        # a copy: the Session is the caller's (load_session returns it) to change
        base = None if sess.base is None else sess.base.copy()
        self._log_target, self._log_base = target, _frozen(base)
        pending = sess.pending or {}
        if pending.get("points") or pending.get("boxes"):  # else the prompts drawn now stay
            self.set_prompts(np.asarray(pending.get("points", []), float).reshape(-1, 3),
                             [1 if v else 0 for v in pending.get("labels", [])],
                             np.asarray(pending.get("boxes", []), float).reshape(-1, 5),
                             **self.pending_times(pending))  # (a movie's: at their time point)
        self.previews, self.volume = [], None
        self.render()
        self.trace = sess.trace
        self.notify_trace(self.trace)

    # ------------------------------------------------------------------ resume
    def offer_resume(self) -> S.Session | None:
        """When the image has an autosaved session next to it (not declined, not loaded, and
        not the one whose labels the target labels already hold: the dock closed and opened
        again goes on with it), call :meth:`notify_resume` and say so in a notification;
        returns that session (read without its labels)."""
        target = self.saved_session_path()
        if target is None or str(target) in self._declined:
            return None
        if self.session_path is not None and self.session_path == target:
            return None
        labels = self.held_labels()
        held = None if labels is None else self.autosave_holding(np.asarray(labels))
        if held is not None:
            try:  # its log goes on from now (a saved session keeps its commits)
                self._log_before_commit(*self.commit_target(), held=held)
            except UserError:  # a target that cannot take commits: nothing to go on with
                pass
            if note := other_sessions_note(held.path, self._free_session_files()):
                self.notify_info(note)
            return None
        offer = resume_offer(target, self._free_session_files(), self.image_name())
        if offer is None:
            return None
        self.notify_resume(str(target), offer[0])
        self.notify_info(offer[1])
        return S.read_session(target, load_labels=False, sweep_temporaries=True)

    def resume(self) -> S.Session:
        """Load the autosaved session of this image (:meth:`load_session`); once this
        session's autosave has kept it aside (it was not resumed before a commit), the kept
        copy."""
        target = self.saved_session_path()
        if self._kept_aside is not None and self._kept_aside.is_file() and (
                target is None or self._owns_autosave(target)):
            target = self._kept_aside
        live = self._session_files() if target is None else None
        if live:
            raise UserError(f"The autosaved session of this image, {live[0]}, is being "
                            f"autosaved by {claim_holder(live[0])}: its commits go on there. "
                            "Close that dock (or napari) first to resume it here.")
        if target is None:
            raise UserError("No autosaved session of this image (next to it or in the cache "
                            "folder).")
        return self.load_session(target)

    def decline_resume(self) -> None:
        target = self.saved_session_path()
        if target is not None:
            self._declined.add(str(target))

    # ------------------------------------------------------------------ trace
    def apply_fix(self, flag: dict) -> None:
        """Carry out a flag's fix: go to its slice and, for the point object, add a positive
        point at the centre of the object's last mask there (then Propagate again)."""
        fix = flag.get("fix")
        if not fix:
            self.go_to_slice(int(flag["slice"]))
            return
        z, (r, c) = int(fix["slice"]), fix["point"]
        self.go_to_slice(z)
        keys = (self._volume_request or (None, None, {}))[2]
        obj = next((o for o in (self.trace or {}).get("objects", []) if flag in o["flags"]), {})
        if keys.get(obj.get("id"), POINT_OBJECT) != POINT_OBJECT:
            self._say(f"Slice {z}: draw a box around the object here; a box object lives on "
                      "its own slice, so it becomes a new object.")
            return
        self.add_point(z, r, c, positive=True)
        self._say(f"Added a point on slice {z} at (row {r:g}, col {c:g}); press Propagate to "
                  "carry the object on from there.")


def _as_is(labels: np.ndarray) -> np.ndarray:
    """``labels`` themselves (:meth:`SessionLog.session_state`'s ``copy`` when the caller
    copies them later)."""
    return labels


def _frozen(labels: np.ndarray | None) -> np.ndarray | None:
    """A read-only view of ``labels`` (a log base: :meth:`SessionLog._base_hash` keeps its
    hash); ``labels`` itself stays as it was (a script's loaded session stays writable)."""
    if labels is None:
        return None
    view = labels.view()
    view.flags.writeable = False
    return view


def _model_key(choice) -> str:
    """A model choice's key, a checkpoint's as its absolute path."""
    return str(Path(choice.key).absolute()) if choice.is_file else str(choice.key)


def _not_downloaded(choice) -> str:
    """What to know when a registry model's weights are not on this machine yet."""
    from napari_sam.models import registry

    if choice.is_file or choice.is_demo:
        return ""
    try:
        if registry.is_cached(choice.key):
            return ""
    except (KeyError, ValueError):
        return ""
    return (f"; its weights are not downloaded yet: the first click downloads them "
            f"(napari-sam models download {choice.key}), or pick another model")


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing parent of ``path`` when it is a file (None otherwise, also when
    a parent cannot be looked at)."""
    for parent in path.parents:
        try:
            if parent.exists():
                return None if parent.is_dir() else parent
        except OSError:
            return None
    return None
