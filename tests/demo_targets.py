"""Issue targets that the bundled demo model does not reach yet, and what it measures instead.

The quality tests assert the targets their issues set. Where the shipped demo model falls
short (``MEASURED`` below the ``TARGETS``), ``short_of_target(key)`` gives the test an
``xfail(strict=True)`` mark whose reason names the issue, the target and the measured value.
Every run lists the shortfall (pytest's ``-ra`` summary), and a model that reaches the target
makes the test fail ("XPASS(strict)") until ``MEASURED`` is updated, so no mark outlives its
shortfall. Beside each such test a
floor test asserts ``floor(key)``, the measured value less a small tolerance (or plus, for
leaks), so neither the model nor the code around it can get worse unnoticed.
Tests of our own stricter lines (the GUI's) assert ``bound(key)``: the target where the model
meets it, else the floor.

The numbers belong to one model file: ``DEMO_SHA256``. ``test_demo_targets_match_the_model``
(tests/training/test_demo_quality.py) fails when another ``demo.pt`` is installed, asking for
the values here to be measured again. See docs/models.md, "The demo model".
"""

from __future__ import annotations

from typing import NamedTuple

import pytest


class Target(NamedTuple):
    issue: int
    what: str
    target: float
    higher_is_better: bool = True


#: key -> what an issue (or, for the GUI, our own test) asks of the demo model
TARGETS: dict[str, Target] = {
    "volume_one_click_iou": Target(3, "one click per nucleus, mean 3D IoU (no leak >= 5 %)", 0.75),
    "volume_one_click_worst_leak": Target(3, "worst leak of an object into neighbours", 0.05, False),
    "automatic_f1_nuclei_2d": Target(5, "segment everything F1@0.5 on 2D nuclei", 0.80),
    "automatic_f1_nuclei_3d": Target(5, "segment everything F1@0.5 on 3D nuclei", 0.70),
    "gui_propagation_3d_iou": Target(4, "GUI: 3D IoU of one propagated nucleus (our own line)", 0.70),
    "gui_propagation_3d_leak": Target(4, "GUI: its pixels on other nuclei (our own line)", 0.05, False),
    "gui_automatic_f1": Target(4, "GUI: segment everything F1@0.5 on a slice (our own line)", 0.60),
}

#: sha256 of the src/napari_sam/weights/demo.pt that MEASURED holds the values of
DEMO_SHA256 = "00dfa08c601217de27536e92a6640e2fc42d160ebf2821a69ce68129da36b5fd"

#: key -> what the shipped demo model measures (the tests print the values they see); run 37
#: (#23, session 23); run 36's values, held here before, in brackets
MEASURED: dict[str, float] = {
    # seeds 10000 / 10001 / 10003: 0.497 / 0.868 / 0.689 (run 36: 0.499 / 0.861 / 0.697, 0.608);
    # two annotated slices 0.630 (0.625)
    "volume_one_click_iou": 0.607,
    # object 87 of seed 10000 (run 36: 0.095); two annotated slices: 0.104 (0.089)
    "volume_one_click_worst_leak": 0.103,
    # seeds 10000-10002: 1.0 / 1.0 / 0.909 (run 36: 1.0 / 1.0 / 0.876, 0.959)
    "automatic_f1_nuclei_2d": 0.970,
    # seeds 10000, 10001: 0.913 / 0.539 with rebound_noise 1 (session 36; with 2: 0.925 /
    # 0.539, 0.732; run 36: 0.903 / 0.553, 0.728)
    "automatic_f1_nuclei_3d": 0.726,
    # one nucleus (run 36: 0.783; 0.577 and 28.4 % before the rebound rule stopped it at the
    # next nucleus)
    "gui_propagation_3d_iou": 0.772,
    "gui_propagation_3d_leak": 0.031,  # the same nucleus (run 36: 0.052)
    "gui_automatic_f1": 0.816,  # run 36: 0.817 (0.783 before rescued masks, #23)
}


def _short(key: str) -> bool:
    t, m = TARGETS[key], MEASURED[key]
    return m < t.target if t.higher_is_better else m > t.target


def short_of_target(key: str):
    """``xfail(strict=True)`` for a quality test whose target the demo model misses; a no-op
    decorator where it meets the target."""
    if not _short(key):
        return lambda test: test
    t = TARGETS[key]
    return pytest.mark.xfail(
        strict=True,
        reason=(f"issue #{t.issue}: {t.what}: target {t.target}, the shipped demo model "
                f"measures {MEASURED[key]} (tests/demo_targets.py, docs/models.md)"),
    )


def floor(key: str, tolerance: float = 0.02) -> float:
    """The measured value less ``tolerance`` (plus it where lower is better)."""
    m = MEASURED[key]
    return m - tolerance if TARGETS[key].higher_is_better else m + tolerance


def bound(key: str, tolerance: float = 0.02) -> float:
    """What a quality test asserts: the target where the demo model meets it, else
    :func:`floor`."""
    return TARGETS[key].target if not _short(key) else floor(key, tolerance)
