"""``python -m napari_sam.cli``: what the ``napari-sam`` console script runs."""

import sys

from napari_sam.cli.app import entry_point

if __name__ == "__main__":  # pragma: no cover - run as a program only
    sys.exit(entry_point())
