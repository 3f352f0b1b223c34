"""The ``napari-sam`` command: models, sample data, embeddings, segmentation, training, export.

Every subcommand is a thin layer over the Python API (:mod:`napari_sam.batch` for the file
jobs); ``napari-sam --help`` and ``napari-sam <command> --help`` describe them. Bad arguments
end with argparse's usage line and a one-line error (exit code 2); problems found while
running (a model that cannot be downloaded, a file that fails) are one-line errors too (exit
code 1), never tracebacks unless ``--verbose`` is given.

Exit codes: 0 every file succeeded (or was already complete); 1 at least one file failed or
the command could not run; 2 bad arguments; 130 interrupted (Ctrl-C or SIGTERM: finished
outputs are complete, the rest resume on the next run); 141 standard output closed by its
reader (``napari-sam models list | head -1``: ends quietly, as Unix tools do; a batch in
which a file failed keeps its 1).

Modules: ``app`` (the parser and :func:`main`), ``errors``, ``arguments`` (argument types,
shared options), ``interruption`` (exit code 130 on a signal at any moment; a signal ignored
at start stays ignored), ``closed_output`` (exit code 141), ``library_log`` (the library's
warnings as ``napari-sam:`` lines), ``table_text`` (the summary's columns), one module per
command group (``models_command``, ``sample_command``, ``batch_parsers`` and
``batch_command`` for embed/auto/segment, ``train_command``, ``export_command``,
``report_command``). ``python -m napari_sam.cli`` runs the command.
"""

from __future__ import annotations

from napari_sam.cli.app import build_parser, entry_point, main
from napari_sam.cli.errors import PROG, CLIError
from napari_sam.cli.models_command import resolve_model
from napari_sam.cli.sample_command import SAMPLES

__all__ = ["main", "build_parser", "SAMPLES", "entry_point", "resolve_model", "CLIError", "PROG"]
