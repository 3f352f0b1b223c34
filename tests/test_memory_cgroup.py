"""The room under a cgroup's memory limit, read from a fake ``/sys/fs/cgroup`` tree (a
container, a SLURM job on cgroup v2, a cgroup v1 job): the page cache the kernel can drop
counts as free, and a limit set on a parent cgroup binds (docs/reliability.md)."""

from __future__ import annotations

import pytest

from napari_sam import memory

GiB, MiB = 1 << 30, 1 << 20


def _fake(monkeypatch, tmp_path, proc_line: str) -> object:
    root = tmp_path / "sys" / "fs" / "cgroup"
    root.mkdir(parents=True)
    (tmp_path / "cgroup").write_text(proc_line + "\n")
    monkeypatch.setattr(memory, "_CGROUP", root)
    monkeypatch.setattr(memory, "_PROC_SELF_CGROUP", tmp_path / "cgroup", raising=False)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 1 << 50)  # a big node
    monkeypatch.setattr(memory, "_address_space_room", lambda: None)
    monkeypatch.setattr(memory.sys, "platform", "linux")
    return root


def _write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text)


def test_a_container_whose_usage_is_page_cache_has_room(monkeypatch, tmp_path):
    """A container (cgroup namespace: ``0::/``) with an 8 GiB limit, 50 MiB short of it, of
    which 6 GiB is inactive page cache (the inputs its batch read): 6 GiB + 50 MiB are free
    (was: 50 MiB, so every propagating ``auto`` job that worked before was refused)."""
    root = _fake(monkeypatch, tmp_path, "0::/")
    _write(root, memory_max=str(8 * GiB), memory_current=str(8 * GiB - 50 * MiB),
           memory_stat=f"anon {GiB}\nfile {7 * GiB}\ninactive_file {6 * GiB}\n")
    assert memory.available_memory() == 6 * GiB + 50 * MiB


def test_a_slurm_limit_on_the_job_cgroup_binds_its_task(monkeypatch, tmp_path):
    """SLURM on cgroup v2 sets the limit on ``job_N/`` (and ``step_N/``); the task's own cgroup
    says ``max``. The tightest room up the tree is the one (was: None, the node's memory)."""
    job = "system.slice/slurmstepd.scope/job_7"
    root = _fake(monkeypatch, tmp_path, f"0::/{job}/step_0/user/task_0")
    _write(root, memory_current=str(100 * GiB))  # the root cgroup: no memory.max
    _write(root / job, memory_max=str(16 * GiB), memory_current=str(10 * GiB),
           memory_stat=f"inactive_file {3 * GiB}\n")
    _write(root / job / "step_0", memory_max=str(32 * GiB), memory_current=str(9 * GiB),
           memory_stat=f"inactive_file {2 * GiB}\n")
    _write(root / job / "step_0/user/task_0", memory_max="max",
           memory_current=str(9 * GiB))
    assert memory.available_memory() == 16 * GiB - 7 * GiB


@pytest.mark.parametrize("where", ["slurm/uid_1/job_3", "/"])
def test_cgroup_v1_counts_total_inactive_file_and_parents(monkeypatch, tmp_path, where):
    """cgroup v1: ``memory.limit_in_bytes`` less ``usage_in_bytes`` less ``total_inactive_file``
    (the hierarchy's, as docker stats); a parent's limit binds; v1's "no limit" is ignored."""
    root = _fake(monkeypatch, tmp_path, f"4:memory:/{where.strip('/')}")
    mem = root / "memory"
    _write(mem, memory_limit_in_bytes=str((1 << 63) - 4096), memory_usage_in_bytes=str(GiB))
    if where != "/":
        _write(mem / "slurm/uid_1", memory_limit_in_bytes=str(4 * GiB),
               memory_usage_in_bytes=str(3 * GiB),
               memory_stat=f"inactive_file {GiB}\ntotal_inactive_file {2 * GiB}\n")
        _write(mem / where, memory_limit_in_bytes=str(8 * GiB),
               memory_usage_in_bytes=str(3 * GiB), memory_stat=f"total_inactive_file {GiB}\n")
        assert memory.available_memory() == 3 * GiB
    else:
        assert memory.available_memory() == 1 << 50
