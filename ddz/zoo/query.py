"""The zoo query language: `DATASET[/ARCH[/SEED]][@SNAPSHOT]` with globs on every axis, and `--where`.

    digits/*@epoch4                      every arch and seed of digits, epoch 4
    cifar10/{convnet3,vgg11}/seed[0-4]@last
    cifar10/convnet3/seed{0..9}@best     per seed, the snapshot with the highest test_acc
    imagenet/resnet18@torchvision        an external PTM (its snapshot is a tag)

Each axis is a glob: `*`, `?`, `[0-9]` / `[!0-9]`, `{a,b}` alternatives and `{0..9}` numeric
ranges. Leaving an axis out means "any". `--where` filters on recorded metrics:
`test_acc>0.5 and epoch<=10` (ops < <= > >= == !=), after `last`/`best` have picked.

This module is pure: it parses and selects over `Candidate` rows. Where the rows come from (the
local zoo, the registry, external sources) is ddz.zoo.registry's job.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

from ddz.errors import NotFoundError, QueryError, closest

MAX_ALTERNATIVES = 10_000
MAX_BRACE_DEPTH = 32
MAX_QUERY = 10_000  # characters
Selector = Literal["last", "best"]
SELECTORS: tuple[str, ...] = get_args(Selector)
BEST_METRIC = "test_acc"
_META = "*?["


def natural_key(text: str) -> tuple:
    """Sort key so that seed2 < seed10 and epoch4 < epoch35."""
    return tuple(int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", text)))


# ---------------------------------------------------------------------------------------------
# Globs on one axis


def _class_regex(body: str) -> str:
    """`[...]` contents (without the brackets) as a regex class."""
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    out = []
    for i, ch in enumerate(body):
        if ch == "-" and 0 < i < len(body) - 1:
            out.append("-")
        else:
            out.append(re.escape(ch))
    return "[" + ("^" if negate else "") + "".join(out) + "]"


def _glob_regex(alternative: str, groups: Iterator[int]) -> str:
    """One brace-free glob as a regex (classes kept verbatim from the expansion). Between two
    stars a segment matches at its first place, in a lookahead the regex engine cannot return
    into (fnmatch's trick): linear in the name, where `.*a.*a.*a...b` would backtrack
    exponentially."""
    pieces: list[str | None] = []  # None: a star
    i = 0
    while i < len(alternative):
        ch = alternative[i]
        if ch == "*":
            if not pieces or pieces[-1] is not None:
                pieces.append(None)
        elif ch == "?":
            pieces.append(".")
        elif ch == "[":
            end = _class_end(alternative, i)
            pieces.append(_class_regex(alternative[i + 1 : end]))
            i = end
        else:
            pieces.append(re.escape(ch))
        i += 1
    stars = [n for n, piece in enumerate(pieces) if piece is None]
    if not stars:
        return "".join(p for p in pieces if p is not None)
    out = "".join(p for p in pieces[: stars[0]] if p is not None)
    for start, end in zip(stars, stars[1:], strict=False):
        segment = "".join(p for p in pieces[start + 1 : end] if p is not None)
        group = f"g{next(groups)}"
        out += f"(?=(?P<{group}>.*?{segment}))(?P={group})"
    return out + ".*" + "".join(p for p in pieces[stars[-1] + 1 :] if p is not None)


def _class_end(text: str, start: int) -> int:
    """Index of the `]` closing the class that opens at `start` (a `]` first in it is literal)."""
    i = start + 1
    if i < len(text) and text[i] in "!^":
        i += 1
    if i < len(text) and text[i] == "]":
        i += 1
    end = text.find("]", i)
    if end < 0:
        raise QueryError(f"unclosed '[' in {text!r}; write a class like [0-9]")
    return end


class _Expander:
    """Expands `{a,b}` and `{N..M}` into brace-free alternatives, checking the syntax."""

    def __init__(self, text: str, axis: str):
        self.text, self.axis = text, axis
        self.depth = 0

    def fail(self, what: str) -> QueryError:
        return QueryError(f"{what} in the {self.axis} axis {self.text!r}")

    def expand(self) -> list[str]:
        alts, pos = self._sequence(0, in_brace=False)
        assert pos == len(self.text)
        return alts

    def _combine(self, left: list[str], right: list[str]) -> list[str]:
        if len(left) * len(right) > MAX_ALTERNATIVES:
            raise self.fail(f"more than {MAX_ALTERNATIVES} alternatives")
        return [a + b for a in left for b in right]

    def _sequence(self, pos: int, in_brace: bool) -> tuple[list[str], int]:
        results = [""]
        text = self.text
        while pos < len(text):
            ch = text[pos]
            if ch == "{":
                alts, pos = self._brace(pos)
                results = self._combine(results, alts)
                continue
            if ch in ",}":
                if in_brace:
                    return results, pos
                raise self.fail(f"unexpected {ch!r} outside braces")
            if ch == "[":
                end = _class_end(text, pos)
                body = text[pos + 1 : end]
                if "{" in body or "}" in body:
                    raise self.fail("braces inside a [...] class")
                try:
                    re.compile(_class_regex(body))
                except re.error as error:
                    raise self.fail(f"bad class [{body}] ({error})") from None
                results = [r + text[pos : end + 1] for r in results]
                pos = end + 1
                continue
            if ch == "]":
                raise self.fail("unexpected ']'")
            end = pos + 1
            while end < len(text) and text[end] not in "{},[]":
                end += 1
            results = [r + text[pos:end] for r in results]  # a literal run at once: linear in the text
            pos = end
        if in_brace:
            raise self.fail("unclosed '{'")
        return results, pos

    def _brace(self, pos: int) -> tuple[list[str], int]:
        self.depth += 1
        if self.depth > MAX_BRACE_DEPTH:
            raise self.fail(f"braces nested more than {MAX_BRACE_DEPTH} deep")
        try:
            return self._brace_body(pos)
        finally:
            self.depth -= 1

    def _brace_body(self, pos: int) -> tuple[list[str], int]:
        numeric = re.compile(r"\{(-?\d{1,9})\.\.(-?\d{1,9})\}").match(self.text, pos)
        if numeric:
            lo, hi = int(numeric.group(1)), int(numeric.group(2))
            if abs(hi - lo) >= MAX_ALTERNATIVES:
                raise self.fail(f"range {numeric.group(0)} longer than {MAX_ALTERNATIVES}")
            step = 1 if hi >= lo else -1
            return [str(n) for n in range(lo, hi + step, step)], numeric.end()
        alternatives: list[str] = []
        pos += 1
        while True:
            alts, pos = self._sequence(pos, in_brace=True)
            alternatives += alts
            if len(alternatives) > MAX_ALTERNATIVES:
                raise self.fail(f"more than {MAX_ALTERNATIVES} alternatives")
            if self.text[pos] == "}":
                return alternatives, pos + 1
            pos += 1  # a ','


@dataclass(frozen=True)
class Glob:
    """One axis of a query: its text and what it matches."""

    text: str
    alternatives: tuple[str, ...] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, text: str, axis: str) -> Glob:
        if not text:
            raise QueryError(f"empty {axis} axis; write a name or a glob such as *")
        return cls(text, tuple(_Expander(text, axis).expand()))

    @cached_property
    def regex(self) -> re.Pattern[str]:
        groups = itertools.count()
        return re.compile("(?:" + "|".join(_glob_regex(a, groups) for a in self.alternatives) + r")\Z",
                          re.DOTALL)

    def match(self, value: str) -> bool:
        return self.regex.match(value) is not None


def _literal_prefix(alternative: str) -> str:
    cut = min((i for i, c in enumerate(alternative) if c in _META), default=len(alternative))
    return alternative[:cut]


def _check_seed(glob: Glob) -> None:
    """Every alternative of a seed glob must be able to match some `seedN`."""
    example = "seed3, seed[0-9], seed{0..9} or *"
    for alt in glob.alternatives:
        prefix = _literal_prefix(alt)
        if prefix == alt and not re.fullmatch(r"seed\d+", alt):
            raise QueryError(f"seed {alt!r} is not of the form seedN; write e.g. {example}")
        if not ("seed".startswith(prefix) or prefix.startswith("seed")):
            raise QueryError(f"seed {alt!r} cannot match seedN; write e.g. {example}")


# ---------------------------------------------------------------------------------------------
# The query


_FORBIDDEN = re.compile(r"[\s\\\"']")


@dataclass(frozen=True)
class Query:
    """A parsed query; `str(query)` gives back the text it was parsed from."""

    dataset: Glob
    arch: Glob | None = None
    seed: Glob | None = None
    snapshot: Glob | None = None
    selector: Selector | None = None  # in place of a snapshot glob

    @classmethod
    def parse(cls, text: str) -> Query:
        if not isinstance(text, str):
            raise QueryError(f"a query is a string, got {type(text).__name__}")
        if not text.strip():
            raise QueryError("empty query; write DATASET[/ARCH[/SEED]][@SNAPSHOT], e.g. digits/*@epoch4")
        if len(text) > MAX_QUERY:
            raise QueryError(f"query {text[:40]!r}... is {len(text)} characters long, more than {MAX_QUERY}; "
                             "use globs and {N..M} ranges")
        if not text.isprintable():
            raise QueryError(f"query {text!r} contains a non-printable character")
        if bad := _FORBIDDEN.search(text):
            raise QueryError(f"query {text!r} contains {bad.group(0)!r}; names use letters, digits, . _ - :")
        head, at, snap = text.partition("@")
        if at and "@" in snap:
            raise QueryError(f"query {text!r} has more than one '@'; write DATASET/ARCH/SEED@SNAPSHOT")
        parts = head.split("/")
        if len(parts) > 3:
            raise QueryError(
                f"query {text!r} has {len(parts)} '/'-separated parts; at most DATASET/ARCH/SEED"
            )
        dataset = Glob.parse(parts[0], "dataset")
        arch = Glob.parse(parts[1], "arch") if len(parts) > 1 else None
        seed = Glob.parse(parts[2], "seed") if len(parts) > 2 else None
        if seed is not None:
            _check_seed(seed)
        snapshot, selector = None, None
        if at:
            if snap in SELECTORS:
                selector = snap
            else:
                snapshot = Glob.parse(snap, "snapshot")
        return cls(dataset, arch, seed, snapshot, selector)

    def __str__(self) -> str:
        text = self.dataset.text
        for part in (self.arch, self.seed):
            if part is not None:
                text += "/" + part.text
        if self.selector:
            text += "@" + self.selector
        elif self.snapshot is not None:
            text += "@" + self.snapshot.text
        return text


# ---------------------------------------------------------------------------------------------
# --where


_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_CONDITION = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|==|!=|<|>)\s*"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\Z"
)


# A word on the right compares a recorded name: `recipe=mtt-expert`, `recipe!=ptm`.
_TEXT_CONDITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|=)\s*([A-Za-z][A-Za-z0-9_.+-]*)\s*\Z")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: float | str

    @property
    def numeric(self) -> bool:
        return isinstance(self.value, float)

    def holds(self, actual: float | str) -> bool:
        return _OPS[self.op](actual, self.value)

    def __str__(self) -> str:
        value = f"{self.value:g}" if self.numeric else self.value
        return f"{self.key}{self.op}{value}"


def parse_where(text: str | None) -> tuple[Condition, ...]:
    """`test_acc>0.5 and epoch<=10 and recipe=mtt-expert` -> conditions, all of which must hold."""
    if text is None or not text.strip():
        return ()
    conditions = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CONDITION.match(part)
        if match:
            conditions.append(Condition(match.group(1), match.group(2), float(match.group(3))))
            continue
        match = _TEXT_CONDITION.match(part)
        if not match:
            raise QueryError(
                f"cannot read the condition {part!r} in --where {text!r}; write e.g. "
                "'test_acc>0.5 and epoch<=10' (ops < <= > >= == !=, joined by 'and') or 'recipe=mtt-expert'"
            )
        op = "==" if match.group(2) == "=" else match.group(2)
        conditions.append(Condition(match.group(1), op, match.group(3)))
    return tuple(conditions)


# ---------------------------------------------------------------------------------------------
# Selection over candidate rows


@dataclass
class Candidate:
    """One selectable row: a zoo snapshot, a registry entry or an external PTM."""

    dataset: str
    arch: str
    seed: int | None
    snapshot: str  # "epoch4", or an external tag such as "torchvision"
    metrics: dict[str, float] = field(default_factory=dict)
    payload: Any = None
    tags: dict[str, str] = field(default_factory=dict)  # recorded names, e.g. {"recipe": "mtt-expert"}

    @property
    def epoch(self) -> int | None:
        match = re.fullmatch(r"epoch(\d+)", self.snapshot)
        return int(match.group(1)) if match else None

    @property
    def name(self) -> str:
        seed = f"/seed{self.seed}" if self.seed is not None else ""
        return f"{self.dataset}/{self.arch}{seed}@{self.snapshot}"

    def value(self, key: str) -> float | None:
        if key in self.metrics:
            return self.metrics[key]
        if key == "epoch":
            return self.epoch
        if key == "seed":
            return self.seed
        return None

    def axis(self, axis: str) -> str | None:
        if axis == "seed":
            return None if self.seed is None else f"seed{self.seed}"
        return getattr(self, axis)


def split_name(name: str) -> tuple[str, str, int | None, str]:
    """"digits/convnet3/seed3@epoch4" -> ("digits", "convnet3", 3, "epoch4");
    "imagenet/resnet18@torchvision" -> ("imagenet", "resnet18", None, "torchvision")."""
    match = re.fullmatch(r"([^/@\s]+)/([^/@\s]+)(?:/seed(\d+))?@([^/@\s]+)", name)
    if not match:
        raise QueryError(
            f"{name!r} is not a zoo name; names are DATASET/ARCH/seedN@epochE or DATASET/ARCH@TAG"
        )
    seed = match.group(3)
    return match.group(1), match.group(2), None if seed is None else int(seed), match.group(4)


def _fmt(values: Iterable[str]) -> str:
    return ", ".join(values)


def _empty(query: Query, axis: str, pattern: str, names: Sequence[str]) -> NotFoundError:
    unique = sorted(set(names), key=natural_key)
    near = closest(pattern, unique, n=5)
    more = f" (of {len(unique)})" if len(unique) > len(near) else ""
    return NotFoundError(
        f"no {axis} matches {pattern!r} in query '{query}'; nearest {axis}s: {_fmt(near)}{more}",
        pattern, near,
    )


def _pick(rows: list[Candidate], selector: str) -> list[Candidate]:
    groups: dict[tuple, list[Candidate]] = {}
    for row in rows:
        if row.epoch is None:
            continue
        if selector == "best" and row.metrics.get(BEST_METRIC) is None:
            continue
        groups.setdefault((row.dataset, row.arch, row.seed), []).append(row)
    if selector == "last":
        return [max(group, key=lambda r: r.epoch) for group in groups.values()]
    # the highest test accuracy; ties go to the earlier epoch (fewer steps from init)
    return [max(group, key=lambda r: (r.metrics[BEST_METRIC], -r.epoch)) for group in groups.values()]


def select(
    query: Query | str, candidates: Iterable[Candidate], where: str | None = None
) -> list[Candidate]:
    """The candidates that `query` (and `where`) select, sorted naturally by name.

    Raises NotFoundError naming the axis that emptied the set and the nearest names on it.
    """
    if isinstance(query, str):
        query = Query.parse(query)
    conditions = parse_where(where)
    rows = list(candidates)
    if not rows:
        raise NotFoundError(
            f"nothing to match '{query}' against: the local zoo, the registry and the external "
            "sources are empty; train with `ddz zoo train` or add entries to registry.yaml", str(query)
        )
    for axis in ("dataset", "arch", "seed"):
        glob: Glob | None = getattr(query, axis)
        if glob is None:
            continue
        kept = [r for r in rows if (v := r.axis(axis)) is not None and glob.match(v)]
        if not kept:
            raise _empty(query, axis, glob.text, [v for r in rows if (v := r.axis(axis)) is not None])
        rows = kept
    if query.snapshot is not None:
        kept = [r for r in rows if query.snapshot.match(r.snapshot)]
        if not kept:
            raise _empty(query, "snapshot", query.snapshot.text, [r.snapshot for r in rows])
        rows = kept
    elif query.selector is not None:
        kept = _pick(rows, query.selector)
        if not kept:
            why = "epoch snapshots" if query.selector == "last" else f"epoch snapshots with {BEST_METRIC}"
            names = sorted({r.name for r in rows}, key=natural_key)[:5]
            raise NotFoundError(f"@{query.selector} in query '{query}' found no {why} among: {_fmt(names)}",
                                f"@{query.selector}", names)
        rows = kept
    for condition in conditions:
        if condition.numeric:
            known = sorted({k for r in rows for k in r.metrics} | {"epoch", "seed"})
        else:
            known = sorted({k for r in rows for k in r.tags})
        if condition.key not in known:
            raise QueryError(
                f"--where: no snapshot of '{query}' records {condition.key!r}; "
                f"keys (closest first): {_fmt(closest(condition.key, known, n=0)) or 'none'}"
            )

        def actual(row: Candidate, c: Condition = condition) -> float | str | None:
            return row.value(c.key) if c.numeric else row.tags.get(c.key)

        kept = [r for r in rows if (v := actual(r)) is not None and condition.holds(v)]
        if not kept:
            values = sorted(v for r in rows if (v := actual(r)) is not None)
            if condition.numeric and values:
                span = f"; recorded {condition.key} spans {values[0]:.4g}..{values[-1]:.4g}"
            else:
                span = f"; recorded: {_fmt(sorted(set(values)))}" if values else ""
            raise NotFoundError(f"no snapshot of '{query}' satisfies {condition}{span}", str(condition))
        rows = kept
    return sorted(rows, key=lambda r: natural_key(r.name))
