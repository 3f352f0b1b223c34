"""Recording the calls a test's code path makes to a function, which still runs."""

from __future__ import annotations


def spy(monkeypatch, owner, name: str, record) -> list:
    """Replace ``owner.name`` (a module's function) by one that appends ``record(*args,
    **kwargs)`` to the returned list, then calls the real function."""
    real = getattr(owner, name)
    seen: list = []

    def wrapper(*args, **kwargs):
        seen.append(record(*args, **kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return seen
