"""Shared fixtures. Keep this file small: module-specific fixtures live beside their tests."""

from __future__ import annotations

import os
import signal

# The suite's Ctrl-C checks send SIGINT as a terminal's Ctrl-C does. Started as a background
# job of a shell script (`.ci/run &`: POSIX shells ignore SIGINT in such jobs), the test
# process and every process it starts inherited an ignored SIGINT, which napari-sam keeps
# ignored on purpose (napari_sam.cli.interruption): nine of those checks failed for that
# alone on a busy machine's background run. The suite handles SIGINT as a process started
# from a terminal does, however it was started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Equivalence and quality tests compare float32 numbers: precision="auto" is bf16 on CPUs with
# native bf16 (#29), so the suite pins fp32; tests of the default path clear this themselves.
os.environ.setdefault("NAPARI_SAM_PRECISION", "fp32")

# pooch now: its logger's handler keeps the stderr of the moment pooch is first imported;
# imported inside a test using capsys, it wrote to that closed stream later (a "--- Logging
# error ---" traceback in the stderr of the next download, in another test).
import pooch  # noqa: E402,F401
import pytest  # noqa: E402
import torch  # noqa: E402

from tiny_configs import TINY_VIT  # noqa: E402  (also imported by test modules)


@pytest.fixture(autouse=True)
def _own_cache_folder(tmp_path_factory, monkeypatch):
    """Each test its own cache folder (``NAPARI_SAM_CACHE_DIR``): the sessions of images
    without a file are autosaved there by their pixels, so one test's (the blob stack's) was
    offered to the next test's session on the same pixels; nothing goes to the user's."""
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_config():
    """A tiny ViT :class:`~napari_sam.models.SamConfig` (input 256, embedding 16x16)."""
    from napari_sam.models import SamConfig

    return SamConfig(**TINY_VIT)


@pytest.fixture
def tiny_sam(tiny_config):
    """A seeded, randomly initialised tiny ViT model in eval mode."""
    from napari_sam.models import build_sam

    torch.manual_seed(0)
    return build_sam(tiny_config)


@pytest.fixture
def files(tmp_path, tiny_sam, tiny_config):
    """``{"stack": a (6, 64, 64) blob stack TIFF, "model": the tiny model's checkpoint file}``
    (the session and replay tests' inputs)."""
    import tifffile

    from stacks import blob_stack
    from tiny_configs import save_tiny

    stack = tmp_path / "data" / "blobs.tif"
    stack.parent.mkdir()
    tifffile.imwrite(stack, blob_stack())
    return {"stack": stack, "model": save_tiny(tmp_path / "m" / "tiny.pt", tiny_sam, tiny_config)}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random CNN-encoder SAM checkpoint (model input 128 px, config in a sidecar),
    saved once per test module: fast on 2 CPU cores, no quality. What the CLI tests run."""
    from tiny_configs import save_tiny_cnn

    return save_tiny_cnn(tmp_path_factory.mktemp("model"))


@pytest.fixture
def offline_cli(tmp_path, monkeypatch):
    """The CLI tests' surroundings: an empty model cache in ``tmp_path`` (no downloaded
    weights are found, nothing is written to the user's cache), one OpenMP and torch thread,
    and float32; the environment and torch's thread count are restored after the test (the
    CLI's ``--precision`` and thread policy set them in-process)."""
    from napari_sam.device import PRECISION_ENV

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def memory_room(monkeypatch):
    """``memory_room(n)``: from then on the process has ``n`` bytes free under its cgroup's
    memory limit (a cluster job, a container), on a machine with plenty: what
    :func:`napari_sam.memory.available_memory` reads is faked (no cgroup is needed)."""
    import sys

    from napari_sam import memory

    if not sys.platform.startswith("linux"):
        pytest.skip("napari_sam.memory reads the free memory on Linux only")
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 1 << 40)
    monkeypatch.setattr(memory, "_address_space_room", lambda: None)

    def set_room(n: int) -> None:
        monkeypatch.setattr(memory, "_cgroup_room", lambda: int(n))

    return set_room
