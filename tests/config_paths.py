"""Key paths of nested configs, for tests that compare configs key by key."""

from __future__ import annotations


def leaf_values(node, prefix: str = "") -> dict:
    """Every leaf of a config or YAML mapping (as plain containers) -> its value; lists are leaves."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(leaf_values(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
