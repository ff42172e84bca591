"""The query grammar: parsing, globs, @last/@best, --where, natural order, errors (pure, no files)."""

from __future__ import annotations

import contextlib
import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddz.errors import NotFoundError, QueryError
from ddz.zoo.query import Candidate, Glob, Query, natural_key, parse_where, select, split_name


def grid(datasets=("cifar10", "cifar100"), archs=("convnet3", "vgg11"), seeds=range(12), epochs=(1, 4, 10)):
    rows = []
    for d in datasets:
        for a in archs:
            for s in seeds:
                for e in epochs:
                    # test_acc peaks at epoch 4 for even seeds and rises to the end for odd ones
                    acc = 0.5 + (0.15 if e == 4 and s % 2 == 0 else 0.01 * e) + 0.001 * s
                    rows.append(Candidate(d, a, s, f"epoch{e}", {"test_acc": acc, "train_loss": 1 / e}))
    rows.append(Candidate("imagenet", "resnet18", None, "torchvision"))
    rows.append(Candidate("clip", "RN50", None, "openai"))
    return rows


def names(query, where=None, rows=None):
    return [c.name for c in select(query, rows if rows is not None else grid(), where)]


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "cifar100/*@epoch4",
    "cifar10/{convnet3,vgg11,resnet18,alexnet}/seed[0-9]@last",
    "cifar10/convnet3/*@best",
    "cifar10/resnet18/seed{0..9}@best",
    "imagenet/resnet18@torchvision",
    "clip/RN50@openai",
    "digits",
    "digits/convnet3/seed3@epoch4",
    "d?g*/[!v]*/seed1?@epoch{1,4,6}",
])
def test_documented_queries_parse_and_round_trip(text):
    query = Query.parse(text)
    assert str(query) == text
    assert Query.parse(str(query)) == query


def test_axes_and_selectors_are_read_apart():
    q = Query.parse("cifar10/{convnet3,vgg11}/seed{0..2}@best")
    assert q.dataset.text == "cifar10"
    assert q.arch.alternatives == ("convnet3", "vgg11")
    assert q.seed.alternatives == ("seed0", "seed1", "seed2")
    assert q.selector == "best" and q.snapshot is None
    assert Query.parse("a/b").seed is None and Query.parse("a/b").snapshot is None
    assert Query.parse("a@{last,best}").selector is None  # only the bare word is a selector


@pytest.mark.parametrize("text, value, matches", [
    ("seed[0-9]", "seed7", True),
    ("seed[0-9]", "seed10", False),
    ("seed[!0-4]", "seed7", True),
    ("seed[!0-4]", "seed3", False),
    ("seed{0..12}", "seed12", True),
    ("seed{3..1}", "seed2", True),
    ("seed{0..9}", "seed10", False),
    ("{conv*,vgg11}", "convnet4", True),
    ("{conv*,vgg11}", "vgg11bn", False),
    ("epoch{1,{4,6}0}", "epoch40", True),
    ("epoch?", "epoch4", True),
    ("epoch?", "epoch10", False),
    ("a.b", "axb", False),  # regex characters are literal
    ("x+y", "x+y", True),
    ("[]]x", "]x", True),  # a ']' first in a class is literal
])
def test_glob_matching(text, value, matches):
    assert Glob.parse(text, "arch").match(value) is matches


@pytest.mark.parametrize("text, message", [
    ("", "empty query"),
    ("   ", "empty query"),
    ("a/b/seed1/x", "at most DATASET/ARCH/SEED"),
    ("a@b@c", "more than one '@'"),
    ("a/", "empty arch axis"),
    ("@epoch4", "empty dataset axis"),
    ("a/b@", "empty snapshot axis"),
    ("a/b/3", "seedN"),
    ("a/b/seed3x", "seedN"),
    ("a/b/epoch4", "not of the form seedN"),
    ("a/b/epoch*", "cannot match seedN"),
    ("a/{b", "unclosed '{'"),
    ("a/b}", "unexpected '}'"),
    ("a,b", "unexpected ','"),
    ("a/[b", "unclosed '['"),
    ("a/[9-0]", "bad class"),
    ("a/b]", "unexpected ']'"),
    ("a b", "contains ' '"),
    ("a\\b", "contains '\\\\'"),
    ("a\x00", "non-printable"),
    ("a/{0..99999}", "longer than"),
    ("a/{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}", "alternatives"),
])
def test_malformed_queries_say_what_is_wrong(text, message):
    with pytest.raises(QueryError) as info:
        Query.parse(text)
    assert message in str(info.value)


def test_where_parses_and_rejects():
    conds = parse_where("test_acc>0.5 AND epoch<=10 and train_loss != 1e-3")
    assert [(c.key, c.op, c.value) for c in conds] == [
        ("test_acc", ">", 0.5), ("epoch", "<=", 10.0), ("train_loss", "!=", 0.001)
    ]
    assert parse_where(None) == () and parse_where("  ") == ()
    for bad in ("test_acc > ", "test_acc=0.5", "test_acc>0.5 or epoch<3", "1>0", "acc>>1"):
        with pytest.raises(QueryError, match="--where"):
            parse_where(bad)


# --- selection ----------------------------------------------------------------------------------


def test_results_are_naturally_sorted():
    got = names("cifar10/convnet3/*@epoch4")
    assert got[:3] == [f"cifar10/convnet3/seed{i}@epoch4" for i in (0, 1, 2)]
    assert got[-2:] == ["cifar10/convnet3/seed10@epoch4", "cifar10/convnet3/seed11@epoch4"]
    assert sorted(["seed10", "seed9", "seed1"], key=natural_key) == ["seed1", "seed9", "seed10"]


def test_trailing_axes_default_to_everything():
    assert len(names("cifar100")) == 2 * 12 * 3
    assert len(names("cifar100/*@epoch4")) == 2 * 12
    assert names("imagenet") == ["imagenet/resnet18@torchvision"]
    assert names("*@openai") == ["clip/RN50@openai"]


def test_last_and_best_pick_per_seed():
    last = names("cifar10/convnet3/seed{0..3}@last")
    assert last == [f"cifar10/convnet3/seed{s}@epoch10" for s in range(4)]
    best = names("cifar10/convnet3/seed{0..3}@best")
    assert best == ["cifar10/convnet3/seed0@epoch4", "cifar10/convnet3/seed1@epoch10",
                    "cifar10/convnet3/seed2@epoch4", "cifar10/convnet3/seed3@epoch10"]
    # ties go to the earlier epoch; rows without test_acc are never "best"
    rows = [Candidate("d", "a", 0, "epoch2", {"test_acc": 0.7}),
            Candidate("d", "a", 0, "epoch9", {"test_acc": 0.7}),
            Candidate("d", "a", 0, "epoch12", {})]
    assert names("d/a/seed0@best", rows=rows) == ["d/a/seed0@epoch2"]
    assert names("d/a/seed0@last", rows=rows) == ["d/a/seed0@epoch12"]


def test_where_filters_after_the_snapshot_choice():
    assert names("cifar10/convnet3/*@best", "test_acc>0.6015 and seed<6") == [
        "cifar10/convnet3/seed{}@epoch{}".format(*p) for p in ((0, 4), (2, 4), (3, 10), (4, 4), (5, 10))
    ]
    assert names("cifar10/vgg11/seed1", "epoch==4") == ["cifar10/vgg11/seed1@epoch4"]
    assert names("cifar10/vgg11/seed1", "epoch!=4 and epoch>=1") == [
        "cifar10/vgg11/seed1@epoch1", "cifar10/vgg11/seed1@epoch10"
    ]


@pytest.mark.parametrize("query, where, message", [
    ("cifar1/*", None, "no dataset matches 'cifar1' in query 'cifar1/*'; nearest datasets: cifar10, cifar1"),
    ("cifar10/convnet", None, "no arch matches 'convnet'"),
    ("cifar10/convnet3/seed42", None, "nearest seeds: seed4, seed2"),
    ("cifar10/convnet3/*@epoch5", None, "nearest snapshots: epoch4, epoch1"),
    ("imagenet/*@torchvisio", None, "nearest snapshots: torchvision"),
    ("clip/*@last", None, "@last in query 'clip/*@last' found no epoch snapshots"),
    ("cifar10/*", "test_acc>0.9", "satisfies test_acc>0.9; recorded test_acc spans 0.51"),
    ("cifar10/*", "test_ac>0.5", "records 'test_ac'; keys (closest first): test_acc"),
])
def test_empty_results_name_the_axis_and_nearest_names(query, where, message):
    with pytest.raises(QueryError) as info:
        select(query, grid(), where)
    assert message in str(info.value)
    if "nearest" in message:  # a NotFoundError carries what was asked and what exists
        assert isinstance(info.value, NotFoundError)
        assert info.value.asked in query and info.value.available
        assert info.value.available[0] in message


def test_an_empty_pool_says_where_to_get_ptms():
    with pytest.raises(QueryError, match="ddz zoo train"):
        select("digits/*", [])


def test_split_name():
    assert split_name("digits/convnet3/seed3@epoch4") == ("digits", "convnet3", 3, "epoch4")
    assert split_name("imagenet/resnet18@torchvision") == ("imagenet", "resnet18", None, "torchvision")
    with pytest.raises(QueryError):
        split_name("digits/convnet3")


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_parser_never_crashes_on_any_text(text):
    try:
        query = Query.parse(text)
    except QueryError:
        return
    assert Query.parse(str(query)) == query


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab09/@*?[]{},.!^-\\ seedpochlatb", max_size=30))
def test_parser_never_crashes_on_query_like_text(text):
    try:
        query = Query.parse(text)
    except QueryError:
        return
    assert str(query) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_where_never_crashes(text):
    with contextlib.suppress(QueryError):
        parse_where(text)


word = st.from_regex(r"[a-z][a-z0-9_.-]{0,6}", fullmatch=True)
number = st.integers(0, 30).map(str)
piece = st.one_of(
    word, st.just("*"), st.just("?"), st.just("[0-9]"), st.just("[!a-c]"),
    st.lists(word, min_size=1, max_size=3).map(lambda ws: "{" + ",".join(ws) + "}"),
    # ranges of up to 21 values: three in one axis stay under MAX_ALTERNATIVES (21**3 < 10_000)
    st.tuples(st.integers(0, 30), st.integers(-20, 20)).map(lambda ad: f"{{{ad[0]}..{max(0, sum(ad))}}}"),
)
axis = st.lists(piece, min_size=1, max_size=3).map("".join)
seed_axis = st.one_of(
    st.just("*"),
    st.one_of(number, st.sampled_from(["[0-9]", "{0..9}", "*", "{1,3}"])).map("seed{}".format),
)
snapshot_axis = st.one_of(
    st.sampled_from(["last", "best"]), number.map("epoch{}".format), st.just("epoch{1,4}"), word, axis,
)


@st.composite
def queries(draw):
    text = draw(axis)
    depth = draw(st.integers(0, 2))
    if depth >= 1:
        text += "/" + draw(axis)
    if depth == 2:
        text += "/" + draw(seed_axis)
    if draw(st.booleans()):
        text += "@" + draw(snapshot_axis)
    return text


@settings(max_examples=300, deadline=None)
@given(queries())
def test_generated_valid_queries_round_trip(text):
    query = Query.parse(text)
    assert str(query) == text
    assert Query.parse(str(query)) == query


@settings(max_examples=300, deadline=None)
@given(axis, st.from_regex(r"[a-z0-9_.!-]{0,10}", fullmatch=True))
def test_globs_agree_with_fnmatch_on_each_alternative(text, value):
    glob = Glob.parse(text, "arch")
    assert glob.match(value) == any(fnmatch.fnmatchcase(value, alt) for alt in glob.alternatives)


@settings(max_examples=100, deadline=None)
@given(word, word, st.integers(0, 99), st.integers(0, 999))
def test_a_literal_name_selects_exactly_itself(dataset, arch, seed, epoch):
    rows = [Candidate(dataset, arch, s, f"epoch{e}") for s in (seed, seed + 1) for e in (epoch, epoch + 1)]
    name = f"{dataset}/{arch}/seed{seed}@epoch{epoch}"
    assert names(name, rows=rows) == [name]
    assert isinstance(Query.parse(name), Query)
