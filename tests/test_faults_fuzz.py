"""Hostile inputs, fuzzed (issue 23, item 5): the query grammar, `--where`, `--alpha`, spec YAML,
lockfiles, registry.yaml and tensor-file (safetensors) headers. Whatever the bytes, the library
raises a DDZError (one line) and nothing else, fast and without allocating what a file merely
declares; a sample goes through the CLI: exit 2, one line on stderr, no traceback.

Structured inputs are real documents (a spec, a registry, a lockfile, a snapshot) with one to
three random mutations each: a value replaced, a key removed or added, at any depth; so that the
validators deep inside are reached, not only the top-level type check. Bounded: few examples,
a deadline per example; DDZ_FUZZ_EXAMPLES raises the count for a longer hunt."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddz.distill.alphas import parse_alpha_options
from ddz.errors import DDZError
from ddz.io import read_header, read_tensors, write_tensors
from ddz.repro.spec_file import parse_spec
from ddz.zoo.lockfile import read_lock
from ddz.zoo.query import Candidate, Query, parse_where, select
from ddz.zoo.registry import parse_registry

EXAMPLES = int(os.environ.get("DDZ_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
TINY_SPEC = Path(__file__).parent / "specs" / "tiny.yaml"
HEX40, HEX64 = "a" * 40, "b" * 64


def only_ddz_errors(call, *args: Any) -> Any:
    """`call(*args)`, or the DDZError it raised, which must be one line; anything else fails."""
    try:
        return call(*args)
    except DDZError as error:
        text = str(error)
        assert text and "\n" not in text, repr(text)
        return error


# --- strings: the query grammar, --where, --alpha ---------------------------------------------------

GLOB_ALPHABET = "abcdeps0123456789*?[]{},.!^-/@ _:"
queries = st.one_of(
    st.text(GLOB_ALPHABET, max_size=40),
    st.text(max_size=30),
    st.lists(st.sampled_from(["digits", "*", "convnet3", "seed", "seed1", "seed[0-9]", "{0..99}", "{a,b}",
                              "[!0]", "@", "/", "epoch4", "@last", "@best", "{", "}", "[", "]", ",", "..",
                              "**"]),
             max_size=10).map("".join),
    st.sampled_from(["{" * 2000, "{a," * 500 + "b" + "}" * 500, "x" * 1_000_000, "*" * 9999, "[" * 10_000,
                     "digits/" + "*a" * 40 + "*b"]),  # deep, long, or backtracking
)
NAMES = ["digits/convnet3/seed0@epoch1", "digits/convnet3/seed12@epoch10", "digits/vgg11/seed3@epoch4",
         "cifar10/convnet3/seed0@epoch1", "imagenet/resnet18@torchvision"]


def candidates() -> list[Candidate]:
    from ddz.zoo.query import split_name

    rows = []
    for i, name in enumerate(NAMES):
        dataset, arch, seed, snapshot = split_name(name)
        rows.append(Candidate(dataset, arch, seed, snapshot, {"test_acc": 0.1 * i}, tags={"recipe": "ptm"}))
    return rows


@FUZZ
@given(queries)
def test_queries_parse_or_say_why_in_one_line(text):
    query = only_ddz_errors(Query.parse, text)
    if isinstance(query, Query):
        assert str(query) == text
        only_ddz_errors(select, query, candidates())


WHERE_ALPHABET = "abcepst_ <>=!.0123456789eE+-andAND\t"
wheres = st.one_of(
    st.text(WHERE_ALPHABET, max_size=40),
    st.text(max_size=30),
    st.lists(st.sampled_from(["test_acc", "epoch", "seed", "recipe", ">", "<=", "==", "!=", "=", "0.5",
                              "1e999", "-1", ".5", "nan", "ptm", " and ", " AND ", " ", "mtt-expert"]),
             max_size=8).map("".join),
)


@FUZZ
@given(wheres)
def test_where_conditions_parse_or_say_why_in_one_line(text):
    conditions = only_ddz_errors(parse_where, text)
    if not isinstance(conditions, DDZError):
        only_ddz_errors(select, "*", candidates(), text)


alphas = st.lists(st.one_of(
    st.text("convnet3vg1=.0123456789eE+-infaNn _", max_size=20),
    st.text(max_size=15),
    st.builds(lambda a, v: f"{a}={v}", st.sampled_from(["convnet3", "", " ", "a=b"]),
              st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=5))),
), max_size=4)


@FUZZ
@given(alphas)
def test_alpha_options_parse_or_say_why_in_one_line(options):
    parsed = only_ddz_errors(parse_alpha_options, options)
    if not isinstance(parsed, DDZError):
        everyone, per_arch = parsed
        for value in [everyone, *per_arch.values()]:
            assert value is None or (math.isfinite(value) and value >= 0)


# --- documents with random mutations ---------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["digits", "convnet3", "dm", "mtt", "every", "${dataset}", "${x}", "m1", "none", "epoch2",
                     "soft", "hard", "*", HEX40, HEX64, "a/b", "../x"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-3, 3), st.sampled_from(["name", "ptm", "seed",
                                                                                         "metadata", "hub"])),
                    inner, max_size=3)), max_leaves=8)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a plain document: the root, each key of a mapping, each list item."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """`document` (plain data) with 1-3 mutations: replace a value, drop a key or item, add a key."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        places = _paths(document)
        path = draw(st.sampled_from(places))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if not path:
            document = draw(VALUES)
        elif action == "drop" and isinstance(parent, (dict, list)):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(st.text(max_size=8), st.integers(0, 3)))] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
    return document


def _dump(document: Any, as_yaml: bool = True) -> str:
    if as_yaml:
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return json.dumps(document, allow_nan=True)


SPEC = yaml.safe_load(TINY_SPEC.read_text())
HOSTILE_YAML = [
    "[" * 5000, "a: &a [*a]\nb: *a\n", "- &x [1, 2]\n- *x\n" * 2, "{" * 3000 + "}" * 3000, "? [a]\n: 1\n",
    "!!python/object:os.system {}\n", "a: !!binary AAAA\n", "\t- x", "x: 2001-01-01\n", "1: 2\n",
    "name: tiny\n" * 2, "%YAML 9.9\n---\na: 1\n", "---\n...\n---\n", "\ufeffname: x\n", "a: b: c\n",
    "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(  # "billion laughs": 10^9 values once expanded
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
]


def test_every_hostile_yaml_document_is_one_line_in_specs_registries_and_lockfiles(tmp_path):
    lock = tmp_path / "ptms.lock.yaml"
    for text in HOSTILE_YAML:
        lock.write_text(text)
        for error in (only_ddz_errors(parse_spec, text, Path("spec.yaml")),
                      only_ddz_errors(parse_registry, text, Path("/tmp/registry.yaml")),
                      only_ddz_errors(read_lock, lock)):
            assert isinstance(error, DDZError), text[:40]
    laughs = only_ddz_errors(parse_spec, HOSTILE_YAML[-1], Path("spec.yaml"))
    assert str(laughs) == "spec.yaml: its aliases expand to more than 1000000 values; write the values out"
    deep = only_ddz_errors(parse_spec, HOSTILE_YAML[0], Path("spec.yaml"))
    assert str(deep) == "spec.yaml:1:65: nested more than 64 levels deep; no ddz file needs that many"


@FUZZ
@given(st.one_of(mutated(SPEC).map(_dump), st.text(max_size=60), st.sampled_from(HOSTILE_YAML)))
def test_spec_files_parse_or_say_why_in_one_line(tmp_path_factory, text):
    only_ddz_errors(parse_spec, text, Path("spec.yaml"))


REGISTRY = {
    "version": 1,
    "hubs": {"local": "/tmp/hub", "web": "http://localhost:9/org"},
    "entries": {"digits/convnet3/seed0@epoch1": {
        "hub": "local", "repo": "org/digits-convnet3", "revision": HEX40, "path": "seed0/epoch1.safetensors",
        "sha256": HEX64, "metadata": {"seed": 0, "epoch": 1, "size": 10, "metrics": {"test_acc": 0.5}}}},
    "external": {"imagenet/resnet18@torchvision": {
        "library": "torchvision", "model": "resnet18", "weights": None, "weights_file": None, "sha256": None,
        "image_size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}},
}


@FUZZ
@given(st.one_of(mutated(REGISTRY).map(_dump), st.text(max_size=60), st.sampled_from(HOSTILE_YAML)))
def test_registry_files_parse_or_say_why_in_one_line(text):
    only_ddz_errors(parse_registry, text, Path("/tmp/registry.yaml"))


LOCK = {
    "format": "ddz.lock/1", "queries": ["digits/*"], "where": None, "created": "now", "ddz_version": "x",
    "ptms": [
        {"name": "digits/convnet3/seed0@epoch1", "source": "hub", "hub": "/tmp/hub",
         "repo": "org/digits-convnet3", "revision": HEX40, "path": "seed0/epoch1.safetensors",
         "sha256": HEX64,
         "metadata": {"seed": 0, "epoch": 1, "size": 10, "metrics": {"test_acc": 0.5}, "recipe": "ptm"},
         "local_path": None},
        {"name": "imagenet/resnet18@torchvision", "source": "external", "sha256": None,
         "metadata": REGISTRY["external"]["imagenet/resnet18@torchvision"]},
    ],
}


@FUZZ
@given(st.booleans(), st.one_of(mutated(LOCK), st.just(None)), st.text(max_size=40),
       st.sampled_from(HOSTILE_YAML + ["[" * 1_000_000, '{"format": "ddz.lock/1", "ptms": [' * 3000]))
def test_lockfiles_parse_or_say_why_in_one_line(tmp_path_factory, as_yaml, document, text, hostile):
    folder = tmp_path_factory.mktemp("lock")
    path = folder / ("ptms.lock.yaml" if as_yaml else "ptms.lock")
    for content in ((_dump(document, as_yaml) if document is not None else text), hostile):
        path.write_text(content)
        only_ddz_errors(read_lock, path)


# --- tensor-file headers -----------------------------------------------------------------------------


def _tensor_file(folder: Path) -> bytes:
    import torch

    from ddz.nets import build_net
    from ddz.zoo.records import SnapshotMeta, SnapshotName

    net = build_net("convnet3", 1, 10, 16, generator_seed=0, width=4)
    name = SnapshotName("digits", "convnet3", 0, 1)
    meta = SnapshotMeta(name=name, data_source="digits", net_config=dict(net.config),
                        classes=tuple(str(i) for i in range(10)), mean=(0.5,), std=(0.25,), metrics={},
                        recipe={}, recipe_hash="x", data_fingerprint="x", ddz_version="x", created="x")
    tensors = {"features.0.weight": net.state_dict()["features.0.weight"], "count": torch.arange(3)}
    path = folder / "real.safetensors"
    write_tensors(path, tensors, "ddz.snapshot/1", meta.encode())
    return path.read_bytes()


def _synset_file(folder: Path) -> bytes:
    import torch

    from ddz.distill.synset import SynSet, save_synset

    synset = SynSet(torch.zeros(2, 1, 4, 4), torch.arange(2), "digits", "dm", 1, 0, {"x": 1}, ["0", "1"],
                    (0.5,), (0.25,))
    return save_synset(folder / "synset.safetensors", synset).read_bytes()


@pytest.fixture(scope="module")
def real_files(tmp_path_factory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("real")
    return [_tensor_file(folder), _synset_file(folder)]


def _split(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def _join(header: Any, body: bytes) -> bytes:
    text = json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", len(text)) + text + body


DTYPES = st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "I8", "U8", "BOOL", "F8_E4M3", "C64", "X", "",
                          "f32"])
SHAPES = st.lists(st.one_of(st.integers(0, 8), st.integers(-2, 2**64), st.just(2**62)), max_size=4)


@st.composite
def hostile_files(draw: st.DrawFn, reals: list[bytes]) -> bytes:
    real = draw(st.sampled_from(reals))
    header, body = _split(real)
    kind = draw(st.sampled_from(["bytes", "length", "truncated", "tensor", "header", "metadata"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "length":  # a header length larger than the file, or enormous
        length = draw(st.one_of(st.integers(len(real), 2**64 - 1), st.just(2**63), st.integers(0, 40)))
        return struct.pack("<Q", length) + real[8:]
    if kind == "truncated":
        return real[:draw(st.integers(0, len(real) - 1))]
    if kind == "tensor":  # wrong dtypes, shapes, offsets; a huge declared size
        name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
        entry = dict(header[name])
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        entry[field] = draw(DTYPES if field == "dtype" else SHAPES)
        header[name] = entry
        return _join(header, body)
    if kind == "header":
        return _join(draw(mutated(header)), body)
    meta = dict(header["__metadata__"])
    key = draw(st.sampled_from(sorted(meta)))
    meta[key] = draw(st.one_of(st.text(max_size=10), SCALARS.map(lambda v: json.dumps(v, allow_nan=True)),
                               VALUES.map(lambda v: json.dumps(v, allow_nan=True))))
    header["__metadata__"] = meta
    return _join(header, body)


@FUZZ
@given(data=st.data())
def test_tensor_files_read_or_say_why_in_one_line(real_files, tmp_path_factory, data):
    from ddz.distill.synset import load_checkpoint, load_synset
    from ddz.zoo.sources.local import read_snapshot, read_snapshot_meta

    path = tmp_path_factory.mktemp("hostile") / "file.safetensors"
    path.write_bytes(data.draw(hostile_files(real_files)))
    only_ddz_errors(read_header, path)
    meta = only_ddz_errors(read_snapshot_meta, path)
    if not isinstance(meta, DDZError):
        json.dumps(meta.to_json())  # what `ddz zoo show` prints
    only_ddz_errors(read_snapshot, path, None)
    only_ddz_errors(read_tensors, path, "ddz.snapshot/1")
    only_ddz_errors(load_synset, path)
    only_ddz_errors(load_checkpoint, path)


def test_a_huge_declared_header_length_allocates_nothing(tmp_path):
    path = tmp_path / "huge.safetensors"
    for length in (99_000_000, 2**63):
        path.write_bytes(struct.pack("<Q", length) + b"{}")
        tracemalloc.start()
        try:
            error = only_ddz_errors(read_header, path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert isinstance(error, DDZError) and f"header length {length} is larger than the file" in str(error)
        assert peak < 1_000_000, peak


def test_a_glob_with_many_stars_matches_a_long_name_in_linear_time():
    """`.*a.*a...b` backtracks exponentially in a regex engine: 33 s for 40 characters before."""
    long = Candidate("a" * 250, "convnet3", 0, "epoch1")
    started = time.perf_counter()
    error = only_ddz_errors(select, "*a" * 40 + "*b", [long])
    assert isinstance(error, DDZError) and time.perf_counter() - started < 1.0
    assert [r.dataset for r in select("*a" * 40 + "*", [long])] == ["a" * 250]


# --- through the CLI -------------------------------------------------------------------------------

HOSTILE_FILES = {
    "hostile-registry.yaml": "hubs:\n  1: /tmp/hub\n",
    "ptms.lock": json.dumps({"format": "ddz.lock/1", "ptms": [{"name": "x", "source": "local",
                                                               "metadata": [1]}]}),
    "spec.yaml": "name: x\ntitle: y\ngrid: &g [*g]\npools: {}\nscales: {}\n",
}
# (command, environment changes): no torch imported, so each run takes a second or two
SUBPROCESS_SAMPLE = [
    (["zoo", "list", "digits/{a,{b"], {}),
    (["zoo", "list", "*", "--where", "test_acc>>1"], {}),
    (["zoo", "list"], {"DDZ_REGISTRY": "hostile-registry.yaml"}),
    (["zoo", "list", "@ptms.lock"], {}),
    (["zoo", "show", "digits/convnet3/seed0@epoch1"], {}),
]


def _hostile_snapshot(home: Path) -> None:
    """A manifest row whose file declares a header longer than itself."""
    folder = home / "zoo" / "digits" / "convnet3"
    (folder / "seed0").mkdir(parents=True)
    (folder / "seed0" / "epoch1.safetensors").write_bytes(struct.pack("<Q", 2**63) + b"{}")
    row = {"name": "digits/convnet3/seed0@epoch1", "sha256": HEX64, "size": 10, "seed": 0, "epoch": 1}
    (folder / "manifest.json").write_text(json.dumps({"format": "ddz.manifest/1", "dataset": "digits",
                                                      "arch": "convnet3",
                                                      "snapshots": {"seed0/epoch1.safetensors": row}}))


def _one_line(code: int, stderr: str) -> str:
    assert code == 2, stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    return stderr


def test_a_sample_through_the_cli_is_one_line_and_exit_2(tmp_path):
    from conftest import ddz_executable

    for name, text in HOSTILE_FILES.items():
        (tmp_path / name).write_text(text)
    _hostile_snapshot(tmp_path / "home")
    base = {**os.environ, "DDZ_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    running = [subprocess.Popen([*ddz_executable(), *args], cwd=tmp_path, env={**base, **env}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for args, env in SUBPROCESS_SAMPLE]
    lines = []
    for process in running:
        _, stderr = process.communicate(timeout=120)
        lines.append(_one_line(process.returncode, stderr))
    assert "unclosed '{'" in lines[0] and "cannot read the condition" in lines[1]
    assert "keys of hubs must be plain names" in lines[2] and "metadata must be a mapping" in lines[3]
    assert "header length 9223372036854775808 is larger than the file" in lines[4]


@pytest.mark.parametrize("args", [
    ["repro", "run", "spec.yaml"],
    ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--alpha", "convnet3=nan"],
    ["distill", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--ptm", "@ptms.lock"],
])
def test_inputs_that_need_torch_through_the_cli_in_process(tmp_path, monkeypatch, capsys, args):
    """The same CLI entry point (`ddz.cli.main.main`), in this process: these commands import torch
    (the command sets torch's thread count: put back what this worker had)."""
    import torch

    from ddz.cli.main import main

    for name, text in HOSTILE_FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDZ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    threads = torch.get_num_threads()
    try:
        code = main(args)
    finally:
        torch.set_num_threads(threads)
    _one_line(code, capsys.readouterr().err)
