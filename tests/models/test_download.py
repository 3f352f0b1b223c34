"""Hashing model files (models/download.py); downloads themselves are tested through the
registry in test_registry.py."""

from __future__ import annotations

import hashlib

from napari_sam.models import download


def test_file_digest_is_computed_once_per_unchanged_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 1000)
    calls = []
    real = download._hasher
    monkeypatch.setattr(download, "_hasher", lambda algo: calls.append(algo) or real(algo))
    expected = hashlib.sha256(b"abc" * 1000).hexdigest()
    assert download.file_digest(path) == expected
    assert download.file_digest(path) == expected
    assert calls == ["sha256"]
    path.write_bytes(b"xyz" * 1001)
    assert download.file_digest(path) == hashlib.sha256(b"xyz" * 1001).hexdigest()
    assert calls == ["sha256", "sha256"]

