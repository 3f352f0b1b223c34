"""Model registry: downloads, verification, the offline error, loading by name and by path.

Everything runs offline: checkpoints are tiny randomly initialised SAMs saved in Meta's
format in tmp_path and served from a local HTTP server on 127.0.0.1 (or file:// URLs).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import re
import shutil
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pooch
import pytest
import torch

from napari_sam.device import resolve_device
from napari_sam.models import download
from napari_sam.models import registry as reg
from napari_sam.models.build import SamConfig, build_sam
from napari_sam.models.registry import ModelDownloadError, ModelSpec
from tiny_configs import SMALLEST_CNN, SMALLEST_VIT

pytestmark = pytest.mark.timeout(120)

SMALL_VIT = SamConfig(**SMALLEST_VIT)
SMALL_CNN = SamConfig(**SMALLEST_CNN)


def _save_tiny(path: Path, seed: int, config: SamConfig = SMALL_VIT) -> dict[str, torch.Tensor]:
    """Save a randomly initialised tiny model's state_dict like Meta's checkpoints."""
    torch.manual_seed(seed)
    sd = build_sam(config).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same_weights(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert torch.equal(got[k].cpu(), v), k


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(path))
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT", 5)
    return path


@pytest.fixture
def server(tmp_path):
    """Static file server on 127.0.0.1 for tmp_path/srv; records the paths it was asked for."""
    root = tmp_path / "srv"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}", hits=hits)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def tiny(server, monkeypatch):
    """A registered model 'tiny_test' served over HTTP, with its sha256 and size."""
    src = server.root / "tiny.pt"
    sd = _save_tiny(src, seed=0)
    spec = ModelSpec(
        name="tiny_test",
        architecture="vit_b",
        url=f"{server.url}/tiny.pt",
        sha256=_sha256(src),
        size=src.stat().st_size,
        filename="tiny_test.pth",
        description="tiny test model",
        source="tests",
    )
    monkeypatch.setitem(reg.REGISTRY, spec.name, spec)
    return SimpleNamespace(spec=spec, src=src, sd=sd, data=src.read_bytes())


# --------------------------------------------------------------------------- the registry


def test_registry_lists_the_official_and_micro_sam_checkpoints():
    names = list(reg.REGISTRY)
    for name in ("demo", "vit_b", "vit_l", "vit_h", "vit_b_lm", "vit_l_lm", "vit_b_em_organelles"):
        assert name in names
    vit_b = reg.REGISTRY["vit_b"]
    assert vit_b.url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert vit_b.known_hash == (
        "sha256:ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    )
    assert vit_b.size == 375_042_383
    assert reg.REGISTRY["vit_h"].size == 2_564_550_879
    assert reg.REGISTRY["vit_b_lm"].known_hash == "xxh128:fe9252a29f3f4ea53c15a06de471e186"
    assert reg.REGISTRY["vit_l_lm"].architecture == "vit_l"
    filenames = [s.filename for s in reg.REGISTRY.values()]
    assert len(set(filenames)) == len(filenames)
    for spec in reg.REGISTRY.values():
        assert spec.packaged or spec.known_hash is not None, spec.name
        if spec.sha256:
            assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
        if spec.xxh128:
            assert len(spec.xxh128) == 32 and int(spec.xxh128, 16) >= 0
    assert reg.REGISTRY["demo"].packaged and reg.REGISTRY["demo"].architecture == "cnn"


def test_spec_validation_and_register(monkeypatch):
    with pytest.raises(ValueError, match="no checksum"):
        ModelSpec("x", "vit_b", "https://example.org/x.pt", None, None, "x.pt", "", "")
    with pytest.raises(ValueError, match="architecture"):
        ModelSpec("x", "vit_q", None, None, None, "x.pt", "", "")
    with pytest.raises(ValueError, match="bare file name"):
        ModelSpec("x", "vit_b", "https://e.org/x", "0" * 64, None, "../x.pt", "", "")
    monkeypatch.setattr(reg, "REGISTRY", dict(reg.REGISTRY))
    spec = ModelSpec("mine", "vit_b", "https://e.org/m.pt", "0" * 64, None, "m.pt", "", "me")
    assert reg.register(spec) is spec and reg.get_spec("mine") is spec
    with pytest.raises(ValueError, match="already registered"):
        reg.register(spec)
    assert reg.register(spec, replace=True) is spec


def test_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "c"))
    assert reg.cache_dir() == tmp_path / "c"
    assert reg.where("vit_b") == tmp_path / "c" / "sam_vit_b_01ec64.pth"
    monkeypatch.delenv("NAPARI_SAM_CACHE_DIR")
    assert reg.cache_dir() == Path(pooch.os_cache("napari-sam-stacks"))


# --------------------------------------------------------------------------- downloads


def test_download_verifies_and_loads_by_name(cache, tiny, server):
    assert not reg.is_cached("tiny_test") and not reg.verify("tiny_test")
    path = reg.fetch("tiny_test", progress=False)
    assert path == cache / "tiny_test.pth"
    assert path.read_bytes() == tiny.data
    assert sorted(p.name for p in cache.iterdir()) == ["tiny_test.pth"]  # no temp files left
    assert reg.is_cached("tiny_test") and reg.verify("tiny_test")
    record = next(m for m in reg.list_models() if m["name"] == "tiny_test")
    assert record["cached"] is True and record["path"] == str(path)
    assert record["size"] == len(tiny.data)

    model = reg.load_model("tiny_test", progress=False)
    _assert_same_weights(model, tiny.sd)
    assert model.model_id == f"tiny_test:{tiny.spec.sha256[:12]}"
    assert not model.training
    assert server.hits == ["/tiny.pt"]  # loading used the cached file, no second download


def test_hash_mismatch_raises_and_leaves_no_file(cache, tiny, server, monkeypatch):
    bad = ModelSpec(**{**tiny.spec.__dict__, "sha256": "0" * 64, "size": None})
    monkeypatch.setitem(reg.REGISTRY, "tiny_test", bad)
    with pytest.raises(ModelDownloadError) as info:
        reg.fetch("tiny_test", progress=False)
    msg = str(info.value)
    assert tiny.spec.url in msg and str(cache / "tiny_test.pth") in msg and "0" * 64 in msg
    assert server.hits == ["/tiny.pt"]
    assert not cache.exists() or list(cache.iterdir()) == []
    with pytest.raises(ModelDownloadError):
        reg.load_model("tiny_test", progress=False)


@pytest.mark.parametrize("size_known", [True, False], ids=["size-check", "hash-check"])
def test_truncated_cached_file_is_downloaded_again(cache, tiny, server, monkeypatch, size_known):
    if not size_known:
        monkeypatch.setitem(
            reg.REGISTRY, "tiny_test", ModelSpec(**{**tiny.spec.__dict__, "size": None})
        )
    cache.mkdir()
    (cache / "tiny_test.pth").write_bytes(tiny.data[: len(tiny.data) // 2])
    assert not reg.verify("tiny_test")
    assert reg.is_cached("tiny_test") is (not size_known)  # is_cached only checks the size
    model = reg.load_model("tiny_test", progress=False)
    _assert_same_weights(model, tiny.sd)
    assert (cache / "tiny_test.pth").read_bytes() == tiny.data
    assert server.hits == ["/tiny.pt"]
    (aside,) = cache.glob("tiny_test.pth.bad-*")  # kept beside it, not deleted
    assert aside.read_bytes() == tiny.data[: len(tiny.data) // 2]


def test_a_folder_under_the_model_file_name_is_never_deleted(cache, tiny, server):
    (cache / "tiny_test.pth").mkdir(parents=True)
    (cache / "tiny_test.pth" / "notes.txt").write_text("mine")
    with pytest.raises(ModelDownloadError, match="cannot be moved aside"):
        reg.fetch("tiny_test", progress=False)
    assert (cache / "tiny_test.pth" / "notes.txt").read_text() == "mine"
    assert reg.cache_state("tiny_test") == "not a file" and reg.check("tiny_test") == "not a file"
    assert server.hits == []


def test_same_size_wrong_content_is_downloaded_again(cache, tiny, server):
    cache.mkdir()
    (cache / "tiny_test.pth").write_bytes(bytes(len(tiny.data)))  # zeros, right size
    assert reg.is_cached("tiny_test") and not reg.verify("tiny_test")
    assert reg.check("tiny_test").startswith("wrong checksum (its sha256 is ")
    assert reg.fetch("tiny_test", progress=False).read_bytes() == tiny.data
    assert server.hits == ["/tiny.pt"]
    (aside,) = cache.glob("tiny_test.pth.bad-*")
    assert aside.read_bytes() == bytes(len(tiny.data))


@pytest.mark.parametrize("other_done", [False, True], ids=["moved-aside", "downloaded"])
def test_two_processes_finding_a_corrupt_file_at_once_both_get_the_model(
        cache, tiny, server, monkeypatch, other_done):
    """Two processes fetch a model whose cached file is corrupt at the same moment: the other
    one moves it aside between this one's check and its own move (and, ``other_done``,
    downloads the model): this one goes on and gets the model (was: ModelDownloadError
    "cannot be moved aside (FileNotFoundError ...); the cache folder is probably
    read-only"); the corrupt file is kept once, never deleted (walk-through, session 41)."""
    cache.mkdir()
    (cache / "tiny_test.pth").write_bytes(bytes(len(tiny.data)))
    real = reg.set_aside

    def other_process_moved_it(path):
        real(path)
        if other_done:
            path.write_bytes(tiny.data)
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)

    monkeypatch.setattr(reg, "set_aside", other_process_moved_it)
    assert reg.fetch("tiny_test", progress=False).read_bytes() == tiny.data
    assert server.hits == ([] if other_done else ["/tiny.pt"])
    (aside,) = cache.glob("tiny_test.pth.bad-*")
    assert aside.read_bytes() == bytes(len(tiny.data))


#: ``python -c KILLED_DOWNLOAD CACHE SPEC_JSON``: fetch the model of SPEC_JSON (a ModelSpec's
#: fields) into CACHE, killed (``os._exit``: no cleanup runs) after half of it was written.
KILLED_DOWNLOAD = """
import json, os, sys
from napari_sam.models import download, registry
os.environ["NAPARI_SAM_CACHE_DIR"] = sys.argv[1]
spec = registry.ModelSpec(**json.loads(sys.argv[2]))
registry.REGISTRY[spec.name] = spec

def half_then_killed(url, output_file, pooch=None):
    with open(output_file, "wb") as fh:
        fh.write(b"x" * (spec.size // 2))
        fh.flush()
    os._exit(9)

download._file_url_downloader = half_then_killed
registry.fetch(spec.name, progress=False)
"""


def test_a_download_killed_half_way_leaves_nothing_once_fetched_again(cache, tiny):
    """A download killed half way (SIGKILL, a power cut) left its partial file in the cache
    folder for good under pooch's name (``tmpXXXXXXXX``, multi-GB for SAM); the next fetch
    removes it, and the partial file of a download still running is kept."""
    import subprocess
    import sys

    from napari_sam.io.dead_temporaries import host_tag

    spec = ModelSpec(**{**tiny.spec.__dict__, "url": tiny.src.as_uri()})
    reg.REGISTRY["tiny_test"] = spec
    proc = subprocess.run([sys.executable, "-c", KILLED_DOWNLOAD, str(cache),
                           json.dumps(spec.__dict__)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    (left,) = cache.iterdir()  # the killed download's partial file
    assert left.stat().st_size == spec.size // 2
    running = cache / f".tiny_test.pth.part-{host_tag()}-1"  # pid 1 runs: still downloading
    running.write_bytes(b"x")
    assert reg.fetch("tiny_test", progress=False).read_bytes() == tiny.data
    assert sorted(p.name for p in cache.iterdir()) == [running.name, "tiny_test.pth"]


def test_a_full_cache_disk_names_the_model_file_the_url_and_where_to_put_it(
        cache, tiny, monkeypatch):
    """The disk of the cache fills up during a download: the error names the model's file
    (was: no file, or the hidden partial file), the URL and where to put the file by hand;
    nothing is left in the cache; the retry once there is space completes."""
    import errno

    spec = ModelSpec(**{**tiny.spec.__dict__, "url": tiny.src.as_uri()})
    monkeypatch.setitem(reg.REGISTRY, "tiny_test", spec)
    real = shutil.copyfileobj

    def fills_up(src, dst, length=0):
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download.shutil, "copyfileobj", fills_up)
    with pytest.raises(ModelDownloadError) as info:
        reg.fetch("tiny_test", progress=False)
    target = cache / "tiny_test.pth"
    assert str(info.value).startswith(
        f"could not download model 'tiny_test' from {spec.url}: OSError: [Errno 28] No space "
        f"left on device: '{target}'. To install it by hand, download {spec.url} ")
    assert f"place the file at {target} (expected: sha256 {spec.sha256}" in str(info.value)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(download.shutil, "copyfileobj", real)
    assert reg.fetch("tiny_test", progress=False).read_bytes() == tiny.data


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_a_downloaded_model_has_the_mode_the_umask_gives(cache, tiny, server):
    """A cache shared by a lab (``NAPARI_SAM_CACHE_DIR`` on a group folder): the model file
    gets the mode of any new file (0644 under umask 022), as the others need to read it (was:
    0600, the mode of pooch's temporary file, so only the user who downloaded it could)."""
    umask = os.umask(0o022)
    try:
        path = reg.fetch("tiny_test", progress=False)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_offline_error_names_url_and_where_to_put_the_file(cache, tiny, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}/sam_vit_b_01ec64.pth"
    with pytest.raises(ModelDownloadError) as info:
        reg.fetch("tiny_test", progress=False, url=url)
    msg = str(info.value)
    assert url in msg
    assert str(cache / "tiny_test.pth") in msg
    assert tiny.spec.sha256 in msg
    assert "NAPARI_SAM_CACHE_DIR" in msg
    assert not (cache / "tiny_test.pth").exists()


def test_corrupt_cached_file_is_not_loaded_when_offline(cache, tiny, monkeypatch):
    offline = ModelSpec(**{**tiny.spec.__dict__, "url": f"http://127.0.0.1:{_free_port()}/tiny.pt"})
    monkeypatch.setitem(reg.REGISTRY, "tiny_test", offline)
    cache.mkdir()
    (cache / "tiny_test.pth").write_bytes(tiny.data[:-100])
    with pytest.raises(ModelDownloadError, match="could not download") as info:
        reg.load_model("tiny_test", progress=False)
    assert not (cache / "tiny_test.pth").exists()
    (aside,) = cache.glob("tiny_test.pth.bad-*")  # not loaded, not deleted either
    assert aside.read_bytes() == tiny.data[:-100]
    assert f"moved to {aside}" in str(info.value) and "wrong size" in str(info.value)


def test_a_file_placed_by_hand_is_moved_aside_never_deleted(cache, tiny, server, caplog):
    """A user's file of the wrong size under a model's name (a SAM 2.1 file of another
    release, say) was deleted by load_model; now it is renamed beside it and the log says
    where it went and what to do."""
    cache.mkdir()
    placed = cache / "tiny_test.pth"
    placed.write_bytes(b"my own checkpoint" * 10)
    size = placed.stat().st_size
    expected = f"wrong size (expected {len(tiny.data)} bytes, found {size})"
    assert reg.cache_state("tiny_test") == expected and reg.check("tiny_test") == expected
    record = next(m for m in reg.list_models() if m["name"] == "tiny_test")
    assert record["cached"] is False and record["state"] == expected
    with caplog.at_level("WARNING", logger="napari_sam.models.registry"):
        _assert_same_weights(reg.load_model("tiny_test", progress=False), tiny.sd)
    (aside,) = cache.glob("tiny_test.pth.bad-*")
    assert re.fullmatch(r"tiny_test\.pth\.bad-\d{8}-\d{6}", aside.name)
    assert aside.read_bytes() == b"my own checkpoint" * 10
    log = caplog.text
    assert f"moved to {aside}" in log and "not deleted" in log and expected in log
    assert f"place the right one at {placed}" in log
    # a second wrong file the same second gets a name of its own
    placed.write_bytes(b"again")
    reg.fetch("tiny_test", progress=False)
    assert len(list(cache.glob("tiny_test.pth.bad-*"))) == 2


def test_missing_file_on_server_is_a_download_error(cache, tiny, server):
    url = f"{server.url}/nope.pt"
    with pytest.raises(ModelDownloadError) as info:
        reg.fetch("tiny_test", progress=False, url=url)
    assert url in str(info.value) and "404" in str(info.value)


def test_file_url_and_hand_placed_file(cache, tiny, tmp_path):
    mirror = tmp_path / "share" / "copy.pt"
    mirror.parent.mkdir()
    shutil.copy(tiny.src, mirror)
    path = reg.fetch("tiny_test", progress=False, url=mirror.as_uri())
    assert path.read_bytes() == tiny.data
    # a file placed by hand is used as it is, without any download
    path.unlink()
    shutil.copy(tiny.src, reg.where("tiny_test"))
    offline = f"http://127.0.0.1:{_free_port()}/x.pt"
    assert reg.fetch("tiny_test", progress=False, url=offline) == path
    with pytest.raises(ModelDownloadError, match="unsupported URL scheme"):
        path.unlink()
        reg.fetch("tiny_test", url="ftp://example.org/x.pt")


def test_xxh128_models(cache, tiny, server, monkeypatch):
    spec = ModelSpec(**{**tiny.spec.__dict__, "sha256": None, "xxh128": "1" * 32})
    monkeypatch.setitem(reg.REGISTRY, "tiny_test", spec)
    try:
        import xxhash
    except ImportError:
        with pytest.raises(ImportError, match="pip install xxhash"):
            reg.fetch("tiny_test", progress=False)
        assert server.hits == []  # failed before downloading anything
        return
    with pytest.raises(ModelDownloadError):
        reg.fetch("tiny_test", progress=False)
    good = xxhash.xxh128(tiny.data).hexdigest()
    monkeypatch.setitem(reg.REGISTRY, "tiny_test", ModelSpec(**{**spec.__dict__, "xxh128": good}))
    model = reg.load_model("tiny_test", progress=False)
    assert model.model_id == f"tiny_test:{good[:12]}"


# --------------------------------------------------------------------------- loading


def test_unknown_name_is_a_value_error_listing_known_names(cache):
    with pytest.raises(ValueError) as info:
        reg.load_model("vit_z")
    assert "vit_b" in str(info.value) and "demo" in str(info.value)
    with pytest.raises(ValueError, match="vit_b_lm"):
        reg.fetch("vit_z")
    with pytest.raises(ValueError, match="known models"):
        reg.load_model(Path("vit_b"))  # a Path is a path, never a registry name


def test_load_model_from_a_path(tmp_path):
    ckpt = tmp_path / "mine.pth"
    sd = _save_tiny(ckpt, seed=3)
    for arg in (str(ckpt), ckpt):
        model = reg.load_model(arg, device="cpu")
        _assert_same_weights(model, sd)
        assert model.model_id == f"file:{_sha256(ckpt)[:12]}"
        assert model.config.encoder_depth == 2 and model.img_size == 32
    # micro-sam's training wrapper is unwrapped
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model_state": {f"sam.{k}": v for k, v in sd.items()}, "epoch": 3}, wrapped)
    _assert_same_weights(reg.load_model(wrapped), sd)


def test_model_id_is_stable_and_content_dependent(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    _save_tiny(a, seed=1)
    _save_tiny(b, seed=2)
    id_a = reg.load_model(a).model_id
    assert reg.load_model(a).model_id == id_a
    assert reg.load_model(b).model_id != id_a
    copy = tmp_path / "elsewhere" / "renamed.pt"
    copy.parent.mkdir()
    shutil.copy(a, copy)
    assert reg.load_model(copy).model_id == id_a
    # rewriting the file changes the id (the digest cache keys on size and mtime)
    shutil.copy(b, a)
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert reg.load_model(a).model_id == reg.load_model(b).model_id != id_a


def test_demo_missing_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(reg, "weights_dir", lambda: tmp_path / "weights")
    with pytest.raises(FileNotFoundError) as info:
        reg.load_model("demo")
    msg = str(info.value)
    assert str(tmp_path / "weights" / "demo.pt") in msg
    assert "napari-sam models download vit_b" in msg
    assert not reg.is_cached("demo") and not reg.verify("demo")


def test_demo_model_loads_with_a_warning(tmp_path, monkeypatch, caplog):
    weights = tmp_path / "weights"
    sd = _save_tiny(weights / "demo.pt", seed=5, config=SMALL_CNN)
    digest = _sha256(weights / "demo.pt")
    metadata = {"config": SMALL_CNN.to_dict(), "sha256": digest}
    (weights / "demo.json").write_text(json.dumps(metadata))
    monkeypatch.setattr(reg, "weights_dir", lambda: weights)
    assert reg.is_cached("demo") and reg.verify("demo")
    with caplog.at_level(logging.WARNING, logger=reg.__name__):
        model = reg.load_model("demo")
    _assert_same_weights(model, sd)
    assert model.is_demo and model.model_id == f"demo:{digest[:12]}"
    assert "napari-sam models download vit_b" in caplog.text
    assert "demo model" in caplog.text
    # a demo file that does not match its recorded sha256 is refused
    (weights / "demo.json").write_text(json.dumps({**metadata, "sha256": "0" * 64}))
    assert not reg.verify("demo")
    with pytest.raises(RuntimeError, match="does not match"):
        reg.load_model("demo")


def test_no_warning_for_other_models(tmp_path, caplog):
    ckpt = tmp_path / "m.pt"
    _save_tiny(ckpt, seed=0)
    with caplog.at_level(logging.WARNING, logger=reg.__name__):
        reg.load_model(ckpt)
    assert "demo" not in caplog.text


# --------------------------------------------------------------------------- devices


def test_resolve_device():
    has_accel = torch.cuda.is_available() or (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    )
    if not has_accel:
        assert resolve_device("auto") == torch.device("cpu")
        assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError):
        resolve_device("not-a-device")


def test_unavailable_cuda_is_a_value_error(tmp_path):
    if torch.cuda.is_available():
        print("CUDA is available here; the unavailable-device error cannot be tested")
        pytest.skip("CUDA is available on this machine")
    with pytest.raises(ValueError, match="cpu"):
        resolve_device("cuda")
    ckpt = tmp_path / "m.pt"
    _save_tiny(ckpt, seed=0)
    with pytest.raises(ValueError, match="CUDA"):
        reg.load_model(ckpt, device="cuda")


def test_checkpoint_metadata_recommends_segment_everything_thresholds(tmp_path):
    """A checkpoint's metadata file may carry {"automatic": {...}} (the demo model does): it becomes
    model.automatic_defaults; SAM checkpoints without one keep SAM's thresholds; a bad entry
    is an error naming the file and the key."""
    from napari_sam.automatic import recommended_thresholds

    ckpt = tmp_path / "mine.pt"
    _save_tiny(ckpt, seed=3)
    plain = reg.load_model(ckpt)
    assert plain.automatic_defaults == {}
    assert recommended_thresholds(plain) == {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95,
                                             "box_nms_thresh": 0.7}

    (tmp_path / "mine.json").write_text(
        json.dumps({"automatic": {"pred_iou_thresh": 0.6, "box_nms_thresh": 0.3}}))
    model = reg.load_model(ckpt)
    assert model.automatic_defaults == {"pred_iou_thresh": 0.6, "box_nms_thresh": 0.3}
    assert recommended_thresholds(model) == {"pred_iou_thresh": 0.6, "stability_score_thresh": 0.95,
                                             "box_nms_thresh": 0.3}

    (tmp_path / "mine.json").write_text(json.dumps({"automatic": {"pred_iou": 0.6}}))
    with pytest.raises(ValueError, match=r"mine.pt.*unknown key 'pred_iou'"):
        reg.load_model(ckpt)
    (tmp_path / "mine.json").write_text(json.dumps({"automatic": {"stability_score_thresh": 1.5}}))
    with pytest.raises(ValueError, match=r"stability_score_thresh must be a number in \[0, 1\]"):
        reg.load_model(ckpt)


def test_a_failed_downloads_summary_names_the_reason_without_the_url():
    """The dock's status line shows ``ModelDownloadError.summary``: an HTTP 404 put the whole
    URL back in it, and a certificate or proxy failure read "offline" (the reviewer)."""
    import requests

    from napari_sam.models.download import _failure_summary

    response = requests.Response()
    response.status_code, response.reason = 404, "Not Found"
    err = requests.HTTPError("404 Client Error: Not Found for url: https://x/y.pth",
                             response=response)
    assert _failure_summary(err) == "the server answered HTTP 404 Not Found"
    assert "SSLError" in _failure_summary(requests.exceptions.SSLError("bad cert"))
    assert "proxy" in _failure_summary(requests.exceptions.ProxyError("no"))
    assert _failure_summary(requests.ConnectionError("x")) == (
        "offline, or the server did not answer")
    assert _failure_summary(PermissionError(13, "Permission denied", "/c/x.pth")) == (
        "PermissionError: Permission denied")


def test_a_dead_partial_file_that_cannot_be_removed_does_not_stop_the_download(
        cache, tiny, monkeypatch):
    """A killed download's partial file owned by another user in a shared cache folder with
    the sticky bit (mode 1777): removing it raises PermissionError. It is left and the
    download completes (was: every later download failed with that PermissionError, naming
    the hidden partial file)."""
    from dead_process import dead_pid
    from napari_sam.io.dead_temporaries import host_tag

    cache.mkdir(parents=True)
    theirs = cache / f".tiny_test.pth.part-{host_tag()}-{dead_pid()}"
    theirs.write_bytes(b"half")
    real = Path.unlink

    def not_permitted(self, missing_ok=False):
        if self == theirs:
            raise PermissionError(1, "Operation not permitted", str(self))
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", not_permitted)
    assert reg.fetch("tiny_test", progress=False).read_bytes() == tiny.data
    assert sorted(p.name for p in cache.iterdir()) == [theirs.name, "tiny_test.pth"]


def test_a_running_download_is_kept_by_a_sweep_whatever_pid_its_name_has(
        cache, tiny, monkeypatch):
    """A download in another container with the same host name: its partial file's process
    id does not run here. It holds its partial file's lock while it downloads, so a fetch's
    sweep meanwhile keeps it and the download completes (was: removed mid-download)."""
    from dead_process import dead_pid
    from napari_sam.io.dead_temporaries import host_tag, remove_dead

    spec = ModelSpec(**{**tiny.spec.__dict__, "url": tiny.src.as_uri()})
    monkeypatch.setitem(reg.REGISTRY, "tiny_test", spec)
    target = cache / "tiny_test.pth"
    part = cache / f".tiny_test.pth.part-{host_tag()}-{dead_pid()}"
    monkeypatch.setattr(download, "tagged_path", lambda path, kind: part)
    real, swept = download._file_url_downloader, []

    def swept_midway(url, output_file, pooch=None):
        real(url, output_file, pooch)
        swept.extend(remove_dead(target, "part"))

    monkeypatch.setattr(download, "_file_url_downloader", swept_midway)
    assert reg.fetch("tiny_test", progress=False).read_bytes() == tiny.data
    assert swept == []
    assert [p.name for p in cache.iterdir()] == ["tiny_test.pth"]
