"""The ``napari-sam`` command itself: the parser made of every command's part, and
:func:`main`, which runs a command and turns every outcome into an exit code."""

from __future__ import annotations

import logging
import sys

from napari_sam.cli.arguments import COMMAND_PATH, Formatter, Parser
from napari_sam.cli.batch_command import cmd_batch
from napari_sam.cli.batch_parsers import add_auto_parser, add_embed_parser, add_segment_parser
from napari_sam.cli.closed_output import closed_output_code, end_quietly, stdout_is_closed
from napari_sam.cli.errors import PROG, CLIError, print_error, print_usage_error
from napari_sam.cli.export_command import add_export_parser, cmd_export
from napari_sam.cli.interruption import INTERRUPTED, exit_on_signals, handled_by_the_command
from napari_sam.cli.library_log import library_warnings_shown
from napari_sam.cli.models_command import add_models_parser, cmd_models
from napari_sam.cli.report_command import add_report_parser, cmd_report
from napari_sam.cli.sample_command import add_sample_parser, cmd_sample
from napari_sam.cli.train_command import add_train_parser, cmd_train

EPILOG_MAIN = """\
commands in a typical session:
  napari-sam sample nuclei-3d -o data/                   # synthetic sample stacks (TIFF)
  napari-sam auto "data/*.tif" -o out/ --preview         # segment everything, with PNG previews
  napari-sam segment data/ -o seg/ --prompts data/prompts.csv  # the sample's clicks, in z
  napari-sam models download vit_b_lm                    # real weights for light microscopy
  napari-sam auto "data/*.tif" -o out/ --model vit_b_lm --workers 4

Reruns skip complete outputs and finish partial ones. Exit code 0 only when every file
succeeded; a summary lists failures with their reasons. Docs: docs/cli.md, docs/cluster.md.
"""


def build_parser() -> Parser:
    """The ``napari-sam`` argument parser (subcommands models, sample, embed, auto, segment, train,
    export, report); its errors, and its subcommands', are usage errors as
    :func:`~napari_sam.cli.errors.print_usage_error` prints them."""
    from napari_sam import __version__

    parser = Parser(
        prog=PROG, formatter_class=Formatter, epilog=EPILOG_MAIN,
        description="Segment Anything for microscopy, X-ray and underwater images and stacks: "
                    "batch segmentation from the shell.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True

    for add_parser in (add_models_parser, add_sample_parser, add_embed_parser, add_auto_parser,
                       add_segment_parser, add_train_parser, add_export_parser, add_report_parser):
        add_parser(sub)
    return parser


#: The commands that load torch (and scipy), which need room to start (``ulimit -v``).
_LOADS_TORCH = ("embed", "auto", "segment", "train", "export")


def main(argv: list[str] | None = None) -> int:
    """Run ``napari-sam`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    # exits with 2 and a usage error on bad arguments; the deepest subcommand's own name when it
    # has arguments it does not know (argparse's parse_args would name only `napari-sam`)
    args, unknown = parser.parse_known_args(argv)
    command = getattr(args, COMMAND_PATH) or args.command  # "models download", "auto"
    if unknown:
        parser.fail(f"unrecognized arguments: {' '.join(unknown)}", command)
    verbose = getattr(args, "verbose", False)
    if args.command in _LOADS_TORCH:  # before torch and scipy load: they can hang there
        from napari_sam.memory import address_space_too_small

        if (text := address_space_too_small(f"{PROG} {command}")) is not None:
            print_error(text)
            return 1
    from napari_sam.batch import BatchError
    from napari_sam.batch.models import DropDemoWarning

    # every command prints its own demo-model note (not with --quiet): not the library's too
    # train and the batch commands print the model's load notes themselves (not export)
    demo_line = DropDemoWarning(load_notes=args.command not in ("models", "sample", "export",
                                                                "report"))
    logging.getLogger("napari_sam.models.registry").addFilter(demo_line)
    try:
        with handled_by_the_command(), library_warnings_shown():
            return _run(args)
    except KeyboardInterrupt:
        print_error("interrupted")
        return INTERRUPTED
    except CLIError as exc:
        if exc.code == 2:
            print_usage_error(command, str(exc))
        else:
            print_error(str(exc))
        return exc.code
    except BatchError as exc:
        print_usage_error(command, str(exc))
        return 2
    except Exception as exc:  # our errors carry their own next step
        if isinstance(exc, BrokenPipeError) and stdout_is_closed():
            return end_quietly()  # `napari-sam models list | head -1`: as Unix tools end
        if verbose:
            import traceback

            traceback.print_exc()
        text = str(exc) or type(exc).__name__
        from napari_sam.io.write_errors import write_problem
        from napari_sam.memory import is_out_of_memory
        from napari_sam.models.registry import ModelDownloadError

        if write_problem(exc) is not None:  # a full or read-only disk: the file, what to do
            print_error(write_problem(exc))
            return 1
        if is_out_of_memory(exc):
            print_error(out_of_memory_text(exc, command))
            return 1

        if not isinstance(exc, (ValueError, FileNotFoundError, ModelDownloadError, RuntimeError)):
            text = f"{type(exc).__name__}: {text}"
        print_error(text)
        return 1
    finally:
        logging.getLogger("napari_sam.models.registry").removeFilter(demo_line)


def _run(args) -> int:
    """Run the command ``args`` names; returns its exit code."""
    if args.command == "models":
        return cmd_models(args)
    if args.command == "sample":
        return cmd_sample(args)
    if args.command == "train":
        return cmd_train(args)
    if args.command == "export":
        return cmd_export(args)
    if args.command == "report":
        return cmd_report(args)
    return cmd_batch(args)


def out_of_memory_text(exc: BaseException, command: str | None) -> str:
    """The error line of ``command`` failing with ``exc``, an out-of-memory error outside a
    batch job (loading the model, training, ...): what happened and what to do."""
    from napari_sam.memory import out_of_memory_words

    name = f"napari-sam {command}" if command else "napari-sam"
    return (f"{out_of_memory_words(exc)}: {name} needs more memory than is "
            "free here (or than this job's memory limit allows); free memory (close other "
            "programs, ask the cluster for more), or lower what it holds at once (a smaller "
            f"--batch-size; see {name} --help), then run it again")


def entry_point() -> int:
    """The ``napari-sam`` command: the CPU thread policy first (it must be set before torch
    loads; see :func:`napari_sam.device.configure_threads`), then :func:`main`.

    A signal (Ctrl-C, SIGTERM) at any moment gives exit code 130 and ``napari-sam: error:
    interrupted``, never a traceback nor death by the signal
    (:mod:`napari_sam.cli.interruption`): while the command runs, the command handles it;
    before it and after it (its clean-up, the interpreter's shutdown) the process ends."""
    from napari_sam.device import configure_threads

    exit_on_signals()
    code = None
    try:
        configure_threads()
        try:
            code = main()
        except SystemExit as exc:  # --help, --version, usage errors: printed, maybe not sent
            code = exc.code
        sys.stdout.flush()  # what is left for a closed pipe fails here, not at shutdown
        return code
    except BrokenPipeError:  # its reader has gone (`napari-sam --help | head -1`)
        return closed_output_code(code)  # a batch's failed file: 1, not 141
    except KeyboardInterrupt:  # it landed in main's own clean-up, outside the command
        exit_on_signals()
        print_error("interrupted")
        return INTERRUPTED
    finally:
        exit_on_signals()  # the interpreter's shutdown: a signal there ends it at once
