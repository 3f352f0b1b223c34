"""The core (everything outside _qt/, _sample_data.py, _writer.py) never imports napari or Qt."""

import pkgutil
import subprocess
import sys

import napari_sam

GUI_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")
EXEMPT = ("napari_sam._qt", "napari_sam._sample_data", "napari_sam._writer", "napari_sam._reader")


def core_modules():
    names = []
    for info in pkgutil.walk_packages(napari_sam.__path__, "napari_sam."):
        if not info.name.startswith(EXEMPT):
            names.append(info.name)
    return names


def test_core_modules_do_not_import_napari_or_qt():
    modules = core_modules()
    assert "napari_sam.predictor" in modules and "napari_sam.preprocess" in modules
    # the annotation session is core too: a script drives it without napari
    assert "napari_sam.annotate.annotation_session" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core imported GUI modules: {out.stdout.strip()}"


def test_import_napari_sam_is_light():
    code = "import sys, napari_sam; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", "import napari_sam must not import torch (napari start-up)"


def test_public_names_are_exported_and_resolve():
    assert sorted(napari_sam.__all__) == sorted(["__version__", *napari_sam._EXPORTS])
    for name in napari_sam._EXPORTS:
        obj = getattr(napari_sam, name)
        assert getattr(obj, "__name__", name) == name, (name, obj)


def test_the_command_line_starts_without_torch(tmp_path):
    """``napari-sam --help``, ``--version``, a command's help and ``sample`` never load torch
    (1 s of a new user's first command; the batch package imports its modules on first use);
    the batch commands do."""
    code = (
        "import sys, contextlib, io\n"
        "from napari_sam.cli import main\n"
        "argv = sys.argv[1:]\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(argv)\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    cases = {("--help",): "False", ("--version",): "False", ("auto", "--help"): "False",
             ("segment", "--help"): "False",
             ("sample", "nuclei-3d", "-o", str(tmp_path / "s"), "--shape", "4,32,32"): "False",
             ("auto", str(tmp_path / "none.tif"), "-o", str(tmp_path / "o")): "True"}
    for argv, loaded in cases.items():
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                             text=True, timeout=300)
        assert out.stderr.strip().splitlines()[-1] == loaded, (argv, out.stderr[-2000:])
    assert any((tmp_path / "s").glob("*.tif"))  # the sample was written


def test_listing_models_and_choosing_one_does_not_import_torch():
    """What the dock does while it opens (list the models, read the chosen one's thresholds,
    pick an image and the model) needs no torch: it is imported off the main thread (2-5 s
    of a frozen napari before); loading the model imports it."""
    code = (
        "import sys, numpy as np\n"
        "from napari_sam.annotate import AnnotationSession\n"
        "from napari_sam.annotate.model_choice import default_choice, device_choices, "
        "model_choices, recommended_thresholds\n"
        "choice = default_choice(model_choices())\n"
        "recommended_thresholds(choice)\n"
        "assert device_choices(import_torch=False) == ['auto', 'cpu']\n"
        "s = AnnotationSession()\n"
        "s.set_image(np.zeros((3, 32, 32), np.float32), name='z')\n"
        "s.set_model(choice)\n"
        "print('torch' in sys.modules)\n"
        "s.compute_embeddings([0])\n"
        "print('torch' in sys.modules, s.ready([0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True"], out.stdout
