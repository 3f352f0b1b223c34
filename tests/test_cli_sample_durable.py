"""``napari-sam sample`` writes every file as the io writers do: to a temporary name, flushed
to disk (fsync), then renamed. Its images were renamed unflushed: a crash (power loss) soon
after could leave an empty or truncated sample beside its complete ground truth."""

from __future__ import annotations

import os
import sys

import pytest

from cli_runner import cli


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_every_file_sample_writes_is_flushed_before_it_is_renamed_into_place(
        tmp_path, monkeypatch, capsys):
    flushed, renamed = set(), []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        flushed.add(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    def recording_replace(src, dst, *args, **kwargs):
        renamed.append((str(src), str(dst), str(src) in flushed))
        replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    out = tmp_path / "samples"
    rc, _out, _err = cli(["sample", "nuclei-3d", "-o", out, "--shape", "4,48,48", "-q"], capsys)
    assert rc == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["ground_truth/nuclei-3d_seed10000.tif", "nuclei-3d_seed10000.tif",
                       "prompts.csv"]
    into = {dst: was_flushed for _src, dst, was_flushed in renamed}
    assert into == {str(out / name): True for name in written}
