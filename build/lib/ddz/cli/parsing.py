"""Command-line text to typed values: epoch lists, `--snapshots`, `--net-option KEY=VALUE`.
Each bad text is one ConfigError line naming the option and an example."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ddz.errors import ConfigError

if TYPE_CHECKING:
    from ddz.zoo.recipes import TrainRecipe


def parse_epochs(text: str, option: str) -> tuple[int, ...]:
    """`"1,4,6"` -> (1, 4, 6): sorted, without duplicates; one-line ConfigError on bad text."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts and option != "--milestones":
        raise ConfigError(f"{option} is empty; give comma-separated epochs like 1,4,6")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"bad {option} {text!r}; give comma-separated epochs like 1,4,6") from None
    lowest = 0 if option == "--snapshots" else 1  # snapshot 0: the initial weights
    if any(v < lowest for v in values):
        raise ConfigError(f"bad {option} {text!r}; epochs are counted from 1")
    return tuple(sorted(set(values)))


def parse_snapshots(text: str | None, recipe: TrainRecipe, epochs: int) -> tuple[int, ...]:
    """`--snapshots`: "every" (0..epochs, 0 being the initial weights), a list of epochs, or by
    default (None) the recipe's snapshot epochs that fit in `epochs`, plus the last epoch."""
    if text is None:
        return recipe.snapshots_up_to(epochs)
    if text.strip() == "every":
        return tuple(range(epochs + 1))
    return parse_epochs(text, "--snapshots")


def parse_net_options(items: list[str]) -> tuple[tuple[str, Any], ...]:
    """`["width=16"]` -> (("width", 16),); values are JSON when they parse as JSON, else strings."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad --net-option {item!r}; use KEY=VALUE, e.g. width=16")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return tuple(sorted(options.items()))
