"""``napari-sam models``: list, download, verify and locate model weights; and the model a
command uses when ``--model`` is left out (:func:`resolve_model`)."""

from __future__ import annotations

from pathlib import Path

from napari_sam.cli.arguments import Formatter
from napari_sam.cli.errors import CLIError, print_note

REAL_WEIGHTS_HINT = (
    "for real data download SAM weights once, e.g. `napari-sam models download vit_b_lm` "
    "(light microscopy) or `napari-sam models download vit_b`, then pass --model vit_b_lm"
)


EPILOG_MODELS = """\
examples:
  napari-sam models                      # list: size, checksum, cached or not, source
  napari-sam models download vit_b_lm    # download and verify once
  napari-sam models verify               # check the checksums of every cached file
  napari-sam models where vit_b          # the path to place a file at by hand (offline)
"""


def add_models_parser(sub) -> None:
    """``napari-sam models [list|download|verify|where]``."""
    pm = sub.add_parser("models", help="list, download, verify and locate model weights",
                        description="List the known models and manage downloaded weights.",
                        formatter_class=Formatter, epilog=EPILOG_MODELS)
    msub = pm.add_subparsers(dest="models_command", metavar="ACTION", title="actions")
    msub.add_parser("list", help="list models with their cached state and size (default)",
                    formatter_class=Formatter)
    pd = msub.add_parser("download", help="download and verify a model",
                         formatter_class=Formatter,
                         epilog="example:\n  napari-sam models download vit_b\n")
    pd.add_argument("name", metavar="NAME", help="model name (see `napari-sam models`)")
    pd.add_argument("--url", help="download from this URL instead (a mirror or file://...); the "
                                  "file must still have the published checksum")
    pd.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    pv = msub.add_parser("verify", help="check cached files against their published checksums",
                         formatter_class=Formatter)
    pv.add_argument("name", nargs="?", metavar="NAME", help="one model (default: every cached one)")
    pw = msub.add_parser("where", help="print the path where a model's file is (or goes)",
                         formatter_class=Formatter)
    pw.add_argument("name", metavar="NAME", help="model name (see `napari-sam models`)")


def human_size(n: int | None, *, approx: bool = False) -> str:
    """A byte count for people: ``"12.3 MB"``; with ``approx``, ``"~375 MB"`` (three
    significant digits at most, trailing zeros dropped)."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            break
        n /= 1000
    if approx:
        return f"~{n:.3g} {unit}"
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"


def mirror_url(text: str) -> str:
    """The URL of ``models download --url TEXT``: an ``http(s)://`` or ``file:///`` URL as it
    is; a path of an existing file (``mirror/vit_t.pt``, ``~/w/vit_t.pt``: no scheme) as its
    ``file:///`` URL. CLIError (exit code 2) for a path that is no file, and for a file URL
    that names a host (``file://mirror/x.pt``: two slashes make ``mirror`` the host)."""
    import urllib.parse

    parsed = urllib.parse.urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme == "file" and parsed.netloc not in ("", "localhost"):
        meant = Path(parsed.netloc + parsed.path).expanduser().absolute().as_uri()
        raise CLIError(f"--url {text}: a file URL takes three slashes and the absolute path "
                       f"(with two, {parsed.netloc!r} is read as a host name): give --url "
                       f"{meant}", code=2)
    if scheme in ("http", "https", "file") or (len(scheme) > 1 and "://" in text):
        return text  # (other schemes: the download names them)
    path = Path(text).expanduser()
    if path.is_file():
        return path.absolute().as_uri()
    what = "is a folder; give the model file in it" if path.is_dir() else (
        "is neither a URL (https://..., file:///...) nor an existing file")
    raise CLIError(f"--url {text} {what}", code=2)


def cmd_models(args) -> int:
    """Run ``napari-sam models ACTION``; returns the exit code."""
    from napari_sam.models import registry

    action = args.models_command or "list"
    if action == "list":
        return _list_models(registry)
    if action == "where":
        check_model_name(args.name)
        print(registry.where(args.name))
        return 0
    if action == "download":
        check_model_name(args.name)
        if args.quiet:
            import logging

            import pooch

            pooch.get_logger().setLevel(logging.WARNING)  # pooch's own, unregistered logger
        url = None if args.url is None else mirror_url(args.url)
        if url is not None and registry.REGISTRY[args.name].packaged:
            print_note(f"--url not used: the model {args.name!r} comes with napari-sam "
                       "(nothing to download)")
            url = None
        path = registry.fetch(args.name, progress=not args.quiet, url=url)
        print(path)
        return 0
    if action == "verify":
        names = [args.name] if args.name else [r["name"] for r in registry.list_models()
                                                if Path(r["path"]).is_file()]
        if args.name:
            check_model_name(args.name)
        if not names:
            print("no model files are present; download one with `napari-sam models download NAME`")
            return 0
        bad = 0
        for name in names:
            path = registry.where(name)
            if not path.is_file():
                print(f"{name}: not downloaded ({path})")
                bad += 1
                continue
            problem = registry.check(name)
            if problem is None:
                print(f"{name}: ok ({path})")
                continue
            what = ("SIZE MISMATCH" if problem.startswith("wrong size") else
                    "CHECKSUM MISMATCH" if problem.startswith("wrong checksum") else "BAD FILE")
            if what == "SIZE MISMATCH":
                problem += "; not hashed"
            print(f"{name}: {what}: {problem} ({path}); " + _replace_hint(name, path))
            bad += 1
        return 1 if bad else 0
    raise CLIError(f"unknown models action {action!r}", 2)  # pragma: no cover


def _replace_hint(name: str, path: Path) -> str:
    return (f"run `napari-sam models download {name}` (it moves this file aside to "
            f"{path.name}.bad-<date> and downloads the right one) or place the right file there")


def _list_models(registry) -> int:
    """``napari-sam models list``: one row per model, then a note on each wrong file."""
    rows, notes = [], []
    for rec in registry.list_models():
        size, path = rec["size"], Path(rec["path"])
        if size is None and path.is_file():
            size = path.stat().st_size
        shown = human_size(size)
        if size is None and rec["approx_size"] is not None:  # not published
            shown = human_size(rec["approx_size"], approx=True)
        checksum = rec["checksum"] or "packaged"
        if ":" in checksum:  # algorithm and the first 12 hex digits
            algorithm, digest = checksum.split(":", 1)
            checksum = f"{algorithm}:{digest[:12]}"
        state = rec["state"]
        cached = {"cached": "yes", "not downloaded": "no"}.get(state, state.split(" (")[0])
        if cached not in ("yes", "no"):
            notes.append(f"{rec['name']}: {path} is there but is not used: {state}; "
                         + _replace_hint(rec["name"], path))
        rows.append((rec["name"], rec["architecture"], shown, checksum, cached, rec["source"]))
    header = ("name", "arch", "size", "checksum", "cached", "source")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    for note in notes:
        print(f"\nnote: {note}")
    print(f"\ncache folder: {registry.cache_dir()} (set {registry.CACHE_ENV} to change it)")
    print("download: napari-sam models download NAME; details: docs/models.md")
    return 0


def check_model_name(name: str) -> None:
    """Refuse a name that is not in the registry (exit code 2, listing the known ones)."""
    from napari_sam.models.registry import REGISTRY, suggest_name

    if name not in REGISTRY:
        raise CLIError(f"unknown model {name!r}{suggest_name(name)}; known models: "
                       f"{', '.join(REGISTRY)}", 2)


def _not_a_model(arg: str, registry) -> str:
    """Why ``--model ARG`` names no model: a URL (file:// or http(s)://), a folder, or
    neither a known name nor a file."""
    import urllib.parse

    scheme = urllib.parse.urlparse(arg).scheme.lower()
    if scheme == "file":
        path = urllib.parse.unquote(urllib.parse.urlparse(arg).path)
        return f"--model {arg!r} is a URL; --model takes the file itself: --model {path}"
    if scheme in ("http", "https"):
        return (f"--model {arg!r} is a URL; --model takes a model name or a checkpoint file: "
                "download the file first and pass its path (a mirror of a known model: "
                "`napari-sam models download NAME --url URL`, then --model NAME)")
    if Path(arg).expanduser().is_dir():
        return (f"--model {arg!r} is a folder; give the checkpoint file inside it (.pt or "
                ".pth) or a model name")
    return (f"--model {arg!r} is neither a known model{registry.suggest_name(arg)} nor an "
            f"existing checkpoint file; known models: {', '.join(registry.REGISTRY)}")


def resolve_model(arg: str | None, *, quiet: bool = False) -> str:
    """The model a command uses: ``--model`` if given, else the first downloaded registry model,
    else the bundled demo model. Prints a note whenever the demo model is used (not with
    ``quiet``: ``-q`` prints nothing on success)."""
    from napari_sam.models import registry

    if arg:
        if arg not in registry.REGISTRY and not Path(arg).expanduser().is_file():
            raise CLIError(_not_a_model(arg, registry), 2)
        spec = arg
    else:
        spec = next((n for n, s in registry.REGISTRY.items()  # SAM 2.1 only when asked for
                     if not s.packaged and s.family == "sam1" and registry.is_cached(n)),
                    registry.DEMO_NAME)
        if spec != registry.DEMO_NAME and not quiet:
            print_note(f"using model {spec!r} (downloaded; choose another with --model)")
    demo_path = registry.where(registry.DEMO_NAME)
    is_demo = spec == registry.DEMO_NAME or (
        spec not in registry.REGISTRY and Path(spec).expanduser().resolve() == demo_path.resolve())
    if is_demo:
        if not demo_path.is_file():
            raise CLIError(
                f"no model available: the bundled demo model is not installed ({demo_path} is "
                "missing) and no SAM weights are downloaded; run `napari-sam models download "
                "vit_b` (or vit_b_lm for light microscopy) or pass --model PATH", 1)
        if not quiet:  # -q prints nothing on success; the output metadata says "is_demo"
            print_note("using the bundled demo model (small, trained on synthetic data: for "
                       "trying the tools, not for real data); " + REAL_WEIGHTS_HINT)
    elif spec in registry.REGISTRY and not registry.is_cached(spec):
        # download once here, not in every worker
        registry.fetch(spec, progress=not quiet)
    return spec
