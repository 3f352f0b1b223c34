"""napari_sam.device: what precision="auto" becomes, how it is shown, and the CPU thread policy."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from napari_sam import device as dv

CPU = torch.device("cpu")
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def no_env(monkeypatch):
    for var in (dv.PRECISION_ENV, dv.THREADS_ENV, "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(var, raising=False)
    dv._logged.clear()


def _mock_cpu(monkeypatch, feature):
    monkeypatch.setattr(dv, "cpu_bf16_feature", lambda: feature)


# ------------------------------------------------------------------ precision


@pytest.mark.parametrize("feature", ["avx512_bf16", "amx_bf16"])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(no_env, monkeypatch, feature):
    _mock_cpu(monkeypatch, feature)
    assert dv.resolve_precision("auto", CPU) == torch.bfloat16
    assert dv.resolve_precision(None, CPU) == torch.bfloat16
    assert dv.describe("cpu").startswith(f"cpu, bf16 (the CPU has native bf16 ({feature})")


def test_auto_stays_fp32_on_a_cpu_without_native_bf16(no_env, monkeypatch):
    _mock_cpu(monkeypatch, None)
    assert dv.resolve_precision("auto", CPU) == torch.float32
    assert dv.describe("cpu").startswith("cpu, fp32 (the CPU has no native bf16")


def test_explicit_precisions_win_over_detection(no_env, monkeypatch):
    _mock_cpu(monkeypatch, "avx512_bf16")
    assert dv.resolve_precision("fp32", CPU) == torch.float32
    assert dv.describe("cpu", "fp32").startswith("cpu, fp32 (chosen")
    _mock_cpu(monkeypatch, None)
    assert dv.resolve_precision("bf16", CPU) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision 'fp64'.*'auto', 'fp32'"):
        dv.resolve_precision("fp64", CPU)
    with pytest.raises(ValueError, match="MPS"):
        dv.resolve_precision("bf16", torch.device("mps"))


def test_the_environment_sets_what_auto_means(no_env, monkeypatch):
    _mock_cpu(monkeypatch, "avx512_bf16")
    monkeypatch.setenv(dv.PRECISION_ENV, "fp32")
    assert dv.resolve_precision("auto", CPU) == torch.float32
    assert "set by NAPARI_SAM_PRECISION" in dv.describe("cpu")
    assert dv.resolve_precision("bf16", CPU) == torch.bfloat16  # an explicit argument wins
    _mock_cpu(monkeypatch, None)
    monkeypatch.setenv(dv.PRECISION_ENV, "BF16")
    assert dv.resolve_precision("auto", CPU) == torch.bfloat16
    monkeypatch.setenv(dv.PRECISION_ENV, "auto")
    assert dv.resolve_precision("auto", CPU) == torch.float32
    monkeypatch.setenv(dv.PRECISION_ENV, "half")
    with pytest.raises(ValueError, match="NAPARI_SAM_PRECISION value 'half'"):
        dv.resolve_precision("auto", CPU)


def test_the_choice_is_logged_once(no_env, monkeypatch, caplog):
    _mock_cpu(monkeypatch, "avx512_bf16")
    with caplog.at_level(logging.INFO, logger="napari_sam.device"):
        for _ in range(3):
            dv.resolve_precision("auto", CPU)
    lines = [r.getMessage() for r in caplog.records if "precision" in r.getMessage()]
    assert lines == ["precision bf16 on cpu: the CPU has native bf16 (avx512_bf16)"]


def test_bf16_detection_asks_torch_then_proc_cpuinfo(monkeypatch, tmp_path):
    import torch.cpu as tcpu

    dv.cpu_bf16_feature.cache_clear()
    try:
        monkeypatch.setattr(tcpu, "_is_amx_tile_supported", lambda: False, raising=False)
        monkeypatch.setattr(tcpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
        assert dv.cpu_bf16_feature() == "avx512_bf16"
        dv.cpu_bf16_feature.cache_clear()
        monkeypatch.setattr(tcpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
        assert dv.cpu_bf16_feature() is None
        dv.cpu_bf16_feature.cache_clear()
        monkeypatch.setattr(tcpu, "_is_amx_tile_supported", lambda: True, raising=False)
        assert dv.cpu_bf16_feature() == "amx_bf16"
        # a torch without the query: /proc/cpuinfo's flags
        dv.cpu_bf16_feature.cache_clear()
        monkeypatch.delattr(tcpu, "_is_amx_tile_supported", raising=False)
        info = tmp_path / "cpuinfo"
        info.write_text("model name\t: Some CPU\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx2\n")
        read = dv._cpuinfo_flags
        monkeypatch.setattr(dv, "_cpuinfo_flags", lambda: read(str(info)))
        assert dv.cpu_bf16_feature() == "avx512_bf16"
        dv.cpu_bf16_feature.cache_clear()
        info.write_text("model name\t: Old CPU\nflags\t\t: fpu sse2 avx512f avx2\n")
        assert dv.cpu_bf16_feature() is None
    finally:
        dv.cpu_bf16_feature.cache_clear()


# ------------------------------------------------------------------ threads


@pytest.mark.parametrize(
    ("cores", "busy", "others", "threads", "workers"),
    [(2, 0.0, 0.0, 2, 2),  # idle
     (2, 2.0, 0.0, 1, 4),  # two spinners of our session: more workers, more share
     (2, 1.0, 0.0, 1, 3), (2, 0.4, 0.0, 2, 2),
     (2, 0.0, 1.0, 1, 1),  # another session takes a core whatever we do: the free one
     (2, 0.0, 4.0, 1, 1), (2, 0.0, 0.6, 1, 1), (2, 0.0, 0.4, 2, 2),
     (2, 2.0, 2.0, 1, 3), (8, 0.0, 2.2, 6, 6), (8, 2.0, 0.0, 6, 10), (8, 0.0, 0.0, 8, 8),
     (1, 0.0, 0.0, 1, 1), (1, 1.0, 0.0, 1, 2), (4, 100.0, 0.0, 1, 8)],
)
def test_threads_and_workers_follow_the_free_and_shared_cores(cores, busy, others, threads,
                                                               workers):
    plan = dv.thread_policy(cores, busy, environ={}, others=others)
    assert (plan.threads, plan.workers) == (threads, workers)
    assert plan.env == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert plan.reason == (f"{cores} cores; busy: {busy:.1f} shared thread by thread, "
                           f"{others:.1f} by other sessions")


def test_thread_settings_of_the_user_win():
    plan = dv.thread_policy(2, 3.0, environ={"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"})
    assert plan == (2, 1, {}, "set by OMP_NUM_THREADS")  # OpenMP only: one slice at a time
    plan = dv.thread_policy(2, 0.0, environ={"OMP_NUM_THREADS": "2", "NAPARI_SAM_THREADS": "3"})
    assert plan[:2] == (3, 3) and plan.reason == "set by NAPARI_SAM_THREADS"
    plan = dv.thread_policy(2, 2.0, environ={"NAPARI_SAM_THREADS": "3"}, threads=1)
    assert plan[:2] == (1, 1) and plan.reason == "set by --threads"
    for bad in ("two", "0"):
        with pytest.raises(ValueError, match=f"NAPARI_SAM_THREADS='{bad}'"):
            dv.thread_policy(2, 0.0, environ={"NAPARI_SAM_THREADS": bad})
    with pytest.raises(ValueError, match="--threads 0: give at least 1 thread"):
        dv.thread_policy(2, 0.0, environ={}, threads=0)


def test_configure_threads_sets_torch_threads_and_slice_workers():
    before = torch.get_num_threads()
    env: dict[str, str] = {}
    try:
        assert dv.configure_threads(environ=env, cores=2, busy=0.0, others=1.0) == 1
        assert torch.get_num_threads() == 1 and dv.slice_workers() == 1
        assert dv.configure_threads(environ=env, cores=2, busy=1.0, others=0.0) == 1
        assert dv.slice_workers() == 3
        assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
        env = {"OMP_WAIT_POLICY": "ACTIVE"}
        assert dv.configure_threads(environ=env, cores=2, load=0.0) == 2  # the older name
        assert torch.get_num_threads() == 2 and env == {"OMP_WAIT_POLICY": "ACTIVE"}
        assert dv.slice_workers() == 2
        assert dv.configure_threads(environ={}, threads=3) == 3 and dv.slice_workers() == 3
    finally:
        torch.set_num_threads(before)
        dv.configure_threads(environ={}, threads=1)


def test_busy_cores_are_measured_from_proc_stat(tmp_path):
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat on this system: the load average is used instead")
    cores = len(os.sched_getaffinity(0))
    busy = dv.measure_busy_cores(0.05)
    assert busy is not None and 0.0 <= min(busy) and max(busy) <= cores
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:  # our children share the CPU with us thread by thread (same session)
        time.sleep(0.2)
        for autogroup in (True, False):
            busy = dv.measure_busy_cores(0.1, autogroup=autogroup)
            assert busy.same_group >= min(2, cores) - 0.3, busy  # (other jobs may add)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert dv.measure_busy_cores(0.01, path=str(tmp_path / "missing")) is None
    frozen = tmp_path / "stat"  # a counter that does not move: no measurement
    frozen.write_text("cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 10 0 10 100 0 0 0 0 0 0\n")
    assert dv.measure_busy_cores(0.01, path=str(frozen)) is None


def test_configure_threads_before_torch_is_imported():
    """In a fresh process: importing napari_sam.device does not import torch, so the OpenMP
    settings reach torch when it loads."""
    code = (
        "import sys, os\n"
        "from napari_sam.device import configure_threads\n"
        "assert 'torch' not in sys.modules\n"
        "n = configure_threads(cores=2, busy=0.0, others=1.5)\n"
        "import torch\n"
        "print(n, torch.get_num_threads(), os.environ['OMP_WAIT_POLICY'],"
        " os.environ['OMP_NUM_THREADS'])\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", dv.THREADS_ENV)}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["1", "1", "PASSIVE", "1"]
