"""The npe2 manifest: valid with importable commands, in the editable install and in a wheel.

napari.yaml lives at the repository root; src/napari_sam/napari.yaml is a symlink to it so
that it is package data. These tests check that napari finds it both ways.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAME = "napari-sam-stacks"

pytest.importorskip("npe2")


def _npe2() -> list[str]:
    exe = Path(sys.executable).with_name("npe2")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "npe2"]


def test_symlink_points_at_root_manifest():
    link = ROOT / "src" / "napari_sam" / "napari.yaml"
    assert link.is_symlink() and link.resolve() == (ROOT / "napari.yaml").resolve()


def test_validate_imports_editable_install():
    """`npe2 validate napari-sam-stacks --imports` passes on the installed package."""
    out = subprocess.run(
        [*_npe2(), "validate", NAME, "--imports"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in (out.stdout + out.stderr).lower()


def test_manifest_contributions():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(ROOT / "napari.yaml")
    c = pm.contributions
    assert [w.display_name for w in c.widgets] == ["Segment Anything"]
    assert [m.command for m in c.menus["napari/layers/segment"]] == [c.widgets[0].command]
    assert len(c.sample_data) == 4
    assert c.writers[0].layer_types == ["labels"]
    assert all(cmd.id.startswith(f"{NAME}.") for cmd in c.commands)


@pytest.mark.slow
def test_wheel_contains_a_valid_manifest(tmp_path):
    """Build a wheel from a copy of the project, check napari.yaml is inside (a real file, not
    a link), the entry point names it, and the manifest validates with imports from the
    installed wheel."""
    pytest.importorskip("build")
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "napari.yaml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, project / name)
    if not (project / "README.md").exists():  # pyproject names it; the lead writes it
        (project / "README.md").write_text("napari-sam-stacks\n")
    shutil.copytree(
        ROOT / "src",
        project / "src",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
    )
    dist = tmp_path / "dist"
    out = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check", "--outdir", str(dist),
         str(project)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "napari_sam/napari.yaml" in names
        info = zf.getinfo("napari_sam/napari.yaml")
        assert (info.external_attr >> 16) & 0o170000 != 0o120000  # not a symlink
        text = zf.read("napari_sam/napari.yaml").decode()
        assert text == (ROOT / "napari.yaml").read_text()
        (ep,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = zf.read(ep).decode()
        assert "[napari.manifest]" in entry_points
        assert f"{NAME} = napari_sam:napari.yaml" in entry_points
        for module in ("_qt/widget.py", "_sample_data.py", "_writer.py"):
            assert f"napari_sam/{module}" in names

    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    check = (
        "import napari_sam, npe2, pathlib, sys\n"
        f"assert pathlib.Path(napari_sam.__file__).is_relative_to({str(site)!r}), napari_sam.__file__\n"
        f"pm = npe2.PluginManifest.from_distribution({NAME!r})\n"
        "pm.validate_imports()\n"
        "print('wheel manifest ok', pm.name, len(pm.contributions.commands))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wheel manifest ok napari-sam-stacks" in out.stdout


def test_the_docs_name_the_file_menu_entries_where_napari_puts_them():
    """napari puts the manifest's ``napari/file/io_utilities`` entries under File > IO
    Utilities: the docs (and the status line's advice) say so (they said File > Save SAM
    session..., which a user could not find)."""
    import yaml

    manifest = yaml.safe_load((ROOT / "napari.yaml").read_text())
    titles = {c["id"]: c["title"] for c in manifest["contributions"]["commands"]}
    entries = manifest["contributions"]["menus"]["napari/file/io_utilities"]
    docs = " ".join((ROOT / "docs" / name).read_text() for name in ("gui.md", "sessions.md"))
    docs = " ".join(docs.replace("*", "").split())
    for entry in entries:
        assert f"File > IO Utilities > {titles[entry['command']]}" in docs, entry
    assert "File > Save SAM" not in docs and "File > Load SAM" not in docs
