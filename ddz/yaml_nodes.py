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

from ddz.errors import ConfigError, closest, first_line

STR_TAG = "tag:yaml.org,2002:str"  # a plain (or quoted) string scalar


MAX_DEPTH = 64  # levels of nesting: no ddz file needs more than a few
MAX_NODES = 1_000_000  # values once aliases are expanded: refuses "billion laughs"
_OPEN = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
         yaml.BlockMappingStartToken)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
_BRACKETS = re.compile(r"[\[\]{}]")


def _deep(source: Path, text: str, offset: int) -> ConfigError:
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return ConfigError(f"{source}:{line + 1}:{column + 1}: nested more than {MAX_DEPTH} levels deep; no ddz "
                       "file needs that many")


def _check_depth(text: str, source: Path) -> None:
    """Refuse deep nesting before PyYAML's recursive parser sees it: flow brackets by a plain scan
    of the characters first (PyYAML's scanner is slow on `[[[...`: a thousand of them per
    simple-key window), then every kind of nesting from the tokens."""
    depth = 0
    for bracket in _BRACKETS.finditer(text):
        depth = depth + 1 if bracket.group() in "[{" else max(depth - 1, 0)
        if depth > MAX_DEPTH:
            raise _deep(source, text, bracket.start())
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise _deep(source, text, token.start_mark.index)
        elif isinstance(token, _CLOSE):
            depth -= 1


def _check_size(root: yaml.Node, source: Path) -> None:
    """Refuse a node graph that refers to itself or expands (through aliases) past MAX_NODES."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = [] if isinstance(node, yaml.ScalarNode) else list(node.value)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_NODES:
                raise ConfigError(f"{source}: its aliases expand to more than {MAX_NODES} values; write the "
                                  "values out")
            continue
        if key in sizes:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                mark = child.start_mark
                raise ConfigError(f"{source}:{mark.line + 1}:{mark.column + 1}: an alias refers to the value "
                                  "that holds it; write the values out")
            if id(child) not in sizes:
                stack.append((child, False))


def load_yaml(text: str, source: Path) -> Any:
    """A YAML document's plain value, read as parse_nodes reads it."""
    return parse_nodes(text, source)[1]


def parse_nodes(text: str, source: Path) -> tuple[yaml.Node | None, Any]:
    """The document's root node and its plain value; invalid YAML is one line with file:line.
    Hostile documents are one line too: nested too deeply, or aliases that refer to themselves
    or expand past MAX_NODES values."""
    loader = None
    try:
        _check_depth(text, source)
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        if root is not None:
            _check_size(root, source)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else str(source)
        raise ConfigError(f"{where}: not valid YAML ({error.problem or error.context})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({first_line(error)})") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read; write it with fewer levels") from None
    finally:
        if loader is not None:
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
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == STR_TAG):
                shown = f" (quote {key_node.value!r})" if isinstance(key_node, yaml.ScalarNode) else ""
                raise self.fail(key_node, f"keys of {what} must be plain names{shown}")
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
