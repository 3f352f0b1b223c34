"""What the training tests of images with a channel axis share (sessions 45-46): a small
stack with its labels, and the advice a refusal's message gives, as a shell reads it."""

from __future__ import annotations

import shlex

import numpy as np
import tifffile

#: Slices of :func:`stack_and_labels`
Z = 4


def stack_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """(Z, 48, 48) uint16 squares and their (Z, 48, 48) labels: two objects a slice."""
    image = np.full((Z, 48, 48), 100, np.uint16)
    labels = np.zeros((Z, 48, 48), np.uint16)
    for i, (r, c) in enumerate(((8, 8), (28, 26)), start=1):
        image[:, r : r + 12, c : c + 12] = 900 * i
        labels[:, r : r + 12, c : c + 12] = i
    return image, labels


def advice(line: str) -> tuple[str, list[str]]:
    """The Python line and the train command (as the shell reads it) the message advises."""
    code = line.split("in Python: ", 1)[1].split("; then train", 1)[0]
    return code, shlex.split(line.split("with the same labels: ", 1)[1])


def hyperstack_pair(folder) -> tuple:
    """An ImageJ (Z, C, Y, X) hyperstack of 2 channels, ``folder / "stack.tif"`` (channel 1
    mirrored), and its (Z, Y, X) labels ``folder / "stack_labels.tif"``: (stack, labels)."""
    image, labels = stack_and_labels()
    stack = folder / "stack.tif"
    two = np.stack([image, image[:, :, ::-1]], axis=1)  # Z, C, Y, X
    tifffile.imwrite(stack, two, imagej=True, metadata={"axes": "ZCYX"})
    lb = folder / "stack_labels.tif"
    tifffile.imwrite(lb, labels, photometric="minisblack")
    return stack, lb
