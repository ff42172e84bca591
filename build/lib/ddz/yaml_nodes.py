"""YAML files validated against their node tree, so that every error names file:line:column.

`parse_nodes` reads a document as (node tree, plain data); `NodeChecker` checks mappings, keys and
values against the nodes and raises ConfigError with the position of the offending node. Used by
the registry (ddz.zoo.registry) and the experiment specs (ddz.repro.spec).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ddz.errors import ConfigError, closest


def parse_nodes(text: str, source: Path) -> tuple[yaml.Node | None, Any]:
    """The document's root node and its plain value; invalid YAML is one line with file:line."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else str(source)
        raise ConfigError(f"{where}: not valid YAML ({error.problem or error.context})") from None
    finally:
        loader.dispose()
    return root, data


class NodeChecker:
    """Validation against the YAML node tree, so that every message carries its line."""

    def __init__(self, source: Path):
        self.source = source

    def fail(self, node: yaml.Node, message: str) -> ConfigError:
        mark = node.start_mark
        return ConfigError(f"{self.source}:{mark.line + 1}:{mark.column + 1}: {message}")

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping (key: value lines)")
        items, seen = [], set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"keys of {what} must be plain names")
            key = key_node.value
            if key in seen:
                raise self.fail(key_node, f"{key!r} appears twice in {what}")
            seen.add(key)
            items.append((key, key_node, value_node))
        return items

    def keys(self, items: list, allowed: Sequence[str], required: Sequence[str], node: yaml.Node,
             what: str) -> None:
        present = {key for key, _, _ in items}
        for key, key_node, _ in items:
            if key not in allowed:
                near = closest(key, allowed, n=3)
                raise self.fail(key_node, f"unknown key {key!r} in {what}; valid keys: {', '.join(near)}")
        for key in required:
            if key not in present:
                raise self.fail(node, f"{what} lacks {key!r} (needs {', '.join(required)})")

    def text(self, node: yaml.Node, value: Any, what: str, pattern: re.Pattern | None = None,
             hint: str = "", nullable: bool = False) -> None:
        if value is None and nullable:
            return
        if not isinstance(value, str) or not value:
            quote = " (quote it)" if isinstance(value, (int, float)) else ""
            raise self.fail(node, f"{what} must be a non-empty string{quote}{hint}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(node, f"{what} {value!r} is malformed{hint}")
