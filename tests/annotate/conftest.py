"""Fixtures of the annotation session tests."""

from __future__ import annotations

import pytest

from stacks import blob_session


@pytest.fixture
def session(tiny_sam):
    """A session on the blob stack with the tiny random model, slice 3 shown."""
    return blob_session(tiny_sam)
