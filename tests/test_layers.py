"""ddz's import graph: no cycles, no import that goes up a layer, ddz imports at the top of modules,
and the environment read at the edges only. The graph comes from the source (tests/import_graph.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from import_graph import cycles, imports, modules

ROOT = Path(__file__).resolve().parents[1]

# Lowest first; a module may import its own layer and those below. The zoo's layers are the
# ones docs/architecture.md draws.
LAYERS: list[tuple[str, ...]] = [
    ("ddz", "ddz.errors", "ddz.seeding", "ddz.progress", "ddz.io", "ddz.devices", "ddz.yaml_nodes"),
    ("ddz.data", "ddz.nets"),
    ("ddz.training", "ddz.distributed.ranks", "ddz.distributed.shard"),
    ("ddz.zoo.query", "ddz.zoo.external_spec", "ddz.zoo.records", "ddz.zoo.paths", "ddz.zoo.hub_url",
     "ddz.zoo.ptm"),
    ("ddz.zoo.registry", "ddz.zoo.lockfile"),
    ("ddz.zoo.sources",),
    ("ddz.zoo.resolve", "ddz.zoo.fetch", "ddz.zoo.publish", "ddz.zoo.external_models", "ddz.zoo.loading",
     "ddz.zoo.train", "ddz.zoo.launch", "ddz.distributed.local", "ddz.distributed.slurm",
     "ddz.distributed.spawn"),
    ("ddz.zoo.api",),
    ("ddz.distill",),
    ("ddz.demo", "ddz.repro"),
    ("ddz.cli", "ddz.__main__"),
]
# Function-level imports of ddz modules, allowed only where they keep torch out of commands that
# do not need it: the CLI's command bodies, and the facade's torch-using methods.
LAZY_OK = ("ddz.cli", "ddz.zoo.api")
# Modules that may read os.environ: the CLI edge, the one place the zoo's paths are read, the
# launchers' workers (SLURM's own variables, the environment handed to jobs and ranks), git's
# identity, and SOURCE_DATE_EPOCH for reproducible timestamps.
ENV_OK = ("ddz.cli", "ddz.zoo.paths", "ddz.zoo.launch", "ddz.zoo.sources.hub", "ddz.zoo.records",
          "ddz.distributed.local", "ddz.distributed.slurm", "ddz.distributed.spawn")


def layer_of(module: str) -> int:
    best, rank = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"{module} is in no layer: add it to LAYERS"
    return rank


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_every_module_has_a_layer():
    for module in modules(ROOT):
        layer_of(module)


def test_no_import_cycles_even_through_function_level_imports():
    edges = [e for e in imports(ROOT) if not e.type_only]
    assert cycles(edges) == []


def test_no_module_imports_a_higher_layer():
    upward = [f"{e.source}:{e.line} imports {e.target}" for e in imports(ROOT)
              if layer_of(e.target) > layer_of(e.source)]
    assert upward == []


def test_ddz_imports_sit_at_the_top_of_modules():
    hidden = [f"{e.source}:{e.line} imports {e.target} inside a function" for e in imports(ROOT)
              if e.in_function and not within(e.source, LAZY_OK)]
    assert hidden == []


def test_the_environment_is_read_at_the_edges_only():
    readers = []
    for module, path in modules(ROOT).items():
        if not within(module, ENV_OK) and re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text()):
            readers.append(module)
    assert readers == []


@pytest.mark.parametrize("broken, found", [
    ("from ddz.zoo.api import Zoo\n", "imports ddz.zoo.api"),
    ("def f():\n    from ddz.zoo.registry import load_registry\n", "inside a function"),
])
def test_the_checks_see_a_bad_import(tmp_path, broken, found):
    """The same checks on a copy of ddz with one bad import added to ddz.zoo.query."""
    import shutil

    shutil.copytree(ROOT / "ddz", tmp_path / "ddz")
    query = tmp_path / "ddz" / "zoo" / "query.py"
    query.write_text(query.read_text() + "\n" + broken)
    problems = [f"{e.source}:{e.line} imports {e.target}" + (" inside a function" if e.in_function else "")
                for e in imports(tmp_path) if e.source == "ddz.zoo.query"
                and (layer_of(e.target) > layer_of(e.source) or e.in_function)]
    assert any(found in p for p in problems)
    if "registry" in broken:  # registry imports query: a cycle once the function-level import counts
        assert cycles([e for e in imports(tmp_path) if not e.type_only])
