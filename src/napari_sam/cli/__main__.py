"""``python -m napari_sam.cli``: what the ``napari-sam`` console script runs."""

import sys

from napari_sam.cli.app import entry_point

sys.exit(entry_point())
