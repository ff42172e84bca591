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
    ("ddz", "ddz.errors", "ddz.seeding", "ddz.progress", "ddz.io", "ddz.devices", "ddz.threads",
     "ddz.yaml_nodes"),
    ("ddz.data", "ddz.nets", "ddz.jobs"),
    ("ddz.training", "ddz.distributed"),
    ("ddz.zoo.query", "ddz.zoo.external_spec", "ddz.zoo.records", "ddz.zoo.paths", "ddz.zoo.hub_url",
     "ddz.zoo.ptm"),
    ("ddz.zoo.registry", "ddz.zoo.lockfile"),
    ("ddz.zoo.sources",),
    ("ddz.zoo.resolve", "ddz.zoo.fetch", "ddz.zoo.publish", "ddz.zoo.external_models", "ddz.zoo.loading",
     "ddz.zoo.recipes", "ddz.zoo.runs", "ddz.zoo.checkpoints", "ddz.zoo.train", "ddz.zoo.plan",
     "ddz.zoo.launch"),
    ("ddz.zoo.api",),
    ("ddz.distill",),
    ("ddz.demo", "ddz.repro"),
    ("ddz.cli", "ddz.__main__"),
]
# Imports no layer order would catch: running jobs knows nothing of what the jobs are, and the
# ranks below the zoo stay below it (both adapt ddz.jobs).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "ddz.jobs": ("ddz.zoo", "ddz.repro", "ddz.distill", "ddz.distributed"),
    "ddz.distributed": ("ddz.zoo",),
}
# Function-level imports of ddz modules, allowed only where they keep torch out of commands that
# do not need it: the CLI's command bodies, and the facade's torch-using methods.
LAZY_OK = ("ddz.cli", "ddz.zoo.api")
# Modules that may read os.environ: the CLI edge, the one place the zoo's paths are read, the
# launchers' workers (SLURM's own variables, the environment handed to jobs and ranks), git's
# identity, SOURCE_DATE_EPOCH for reproducible timestamps, and OMP_NUM_THREADS (the threads a
# launcher gave a rank or worker).
ENV_OK = ("ddz.cli", "ddz.zoo.paths", "ddz.jobs.local", "ddz.jobs.slurm", "ddz.zoo.sources.hub",
          "ddz.zoo.records", "ddz.distributed.local", "ddz.distributed.slurm", "ddz.distributed.spawn",
          "ddz.threads")


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


def upward_imports(root: Path) -> list[str]:
    return [f"{e.source}:{e.line} imports {e.target}" for e in imports(root)
            if layer_of(e.target) > layer_of(e.source)]


def forbidden_imports(root: Path) -> list[str]:
    return [f"{e.source}:{e.line} imports {e.target}" for e in imports(root)
            for source, targets in FORBIDDEN.items()
            if within(e.source, (source,)) and within(e.target, targets)]


def hidden_imports(root: Path) -> list[str]:
    return [f"{e.source}:{e.line} imports {e.target} inside a function" for e in imports(root)
            if e.in_function and not within(e.source, LAZY_OK)]


def test_no_module_imports_a_higher_layer():
    assert upward_imports(ROOT) == []


def test_no_forbidden_imports():
    assert forbidden_imports(ROOT) == []


def test_ddz_imports_sit_at_the_top_of_modules():
    assert hidden_imports(ROOT) == []


def test_the_environment_is_read_at_the_edges_only():
    readers = []
    for module, path in modules(ROOT).items():
        if not within(module, ENV_OK) and re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text()):
            readers.append(module)
    assert readers == []


@pytest.mark.parametrize("module, broken, check, found", [
    ("zoo/query.py", "from ddz.zoo.api import Zoo\n", upward_imports, "ddz.zoo.query:"),
    ("zoo/query.py", "def f():\n    from ddz.zoo.registry import load_registry\n", hidden_imports,
     "ddz.zoo.query:"),
    # Each FORBIDDEN rule, on a module it covers (the layers alone would let some of these through).
    ("jobs/pool.py", "from ddz.zoo.records import utc_now\n", forbidden_imports, "ddz.jobs.pool:"),
    ("jobs/work.py", "from ddz.repro.grid import Cell\n", forbidden_imports, "ddz.jobs.work:"),
    ("jobs/slurm.py", "from ddz.distill.report import RunReport\n", forbidden_imports, "ddz.jobs.slurm:"),
    ("jobs/local.py", "from ddz.distributed.ranks import RankFailure\n", forbidden_imports,
     "ddz.jobs.local:"),
    ("distributed/ranks.py", "from ddz.zoo.query import Query\n", forbidden_imports,
     "ddz.distributed.ranks:"),
    ("distributed/local.py", "from ddz.zoo.launch import LaunchConfig\n", forbidden_imports,
     "ddz.distributed.local:"),
])
def test_the_checks_see_a_bad_import(tmp_path, module, broken, check, found):
    """The same checks on a copy of ddz with one bad import added to one module."""
    import shutil

    shutil.copytree(ROOT / "ddz", tmp_path / "ddz")
    assert check(tmp_path) == []
    target = tmp_path / "ddz" / module
    target.write_text(target.read_text() + "\n" + broken)
    assert any(p.startswith(found) for p in check(tmp_path))
    if "registry" in broken:  # registry imports query: a cycle once the function-level import counts
        assert cycles([e for e in imports(tmp_path) if not e.type_only])
