"""The hub against a real olah server: push by git into the folder it serves, pull through the real
huggingface_hub client (an HF endpoint, a private HF cache) into an empty zoo home, pinned
revisions, tampered blobs, offline behaviour, and the `ddz zoo push | lock | pull` commands."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from olah_server import Olah, make_zoo, running_olah

from ddz.errors import ConfigError, HubError, IntegrityError, OfflineError
from ddz.io import sha256_bytes, sha256_file
from ddz.zoo.api import Zoo
from ddz.zoo.hub_url import parse_hub, repo_name
from ddz.zoo.paths import ZooPaths
from ddz.zoo.publish import choose_tag
from ddz.zoo.registry import load_registry, update_registry
from ddz.zoo.sources.hub import GitSession


@pytest.fixture(scope="session")
def olah(tmp_path_factory) -> Olah:
    with running_olah(tmp_path_factory.mktemp("olah")) as server:
        yield server


@pytest.fixture
def org(olah) -> str:
    """A fresh org (a hub folder served by olah) per test."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env(tmp_path):
    """Zoos on separate "machines" (own home and HF cache) that share one registry file."""

    class Env:
        registry = tmp_path / "registry.yaml"

        def zoo(self, name: str, endpoint: str | None = None, offline: bool = False) -> Zoo:
            paths = ZooPaths.under(tmp_path / name, registry=self.registry, hf_cache=self.hf_cache(name),
                                   hf_endpoint=endpoint)
            return Zoo(paths, offline)

        def hf_cache(self, name: str) -> Path:
            return tmp_path / f"hf-{name}" / "hub"

    return Env()


def offline(zoo: Zoo) -> Zoo:
    return Zoo(zoo.paths, offline=True)


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={folder}", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def front_matter(readme: str) -> dict:
    _, front, _ = readme.split("---", 2)
    return yaml.safe_load(front)


def test_push_publishes_a_repo_per_dataset_arch_with_card_manifest_and_tag(olah, org, env):
    a = env.zoo("a")
    files = make_zoo(a.paths.zoo, archs=("convnet3", "convnet4"), seeds=(0, 1), epochs=(1, 4))
    folder = olah.org_folder(org)
    result = a.push("digits/*", str(folder), tag="v1")

    assert [r.repo for r in result.repos] == [f"{org}/digits-convnet3", f"{org}/digits-convnet4"]
    for pushed in result.repos:
        repo = folder / pushed.repo.split("/")[1]
        assert git(repo, "rev-parse", "--is-bare-repository") == "true"
        assert git(repo, "rev-parse", "v1") == pushed.revision == git(repo, "rev-parse", "main")
        assert set(git(repo, "ls-tree", "-r", "--name-only", "v1").split()) == {
            "README.md", "manifest.json", "seed0/epoch1.safetensors", "seed0/epoch4.safetensors",
            "seed1/epoch1.safetensors", "seed1/epoch4.safetensors",
        }
        arch = pushed.repo.split("-")[-1]
        local = json.loads((a.paths.zoo / "digits" / arch / "manifest.json").read_text())
        assert json.loads(git(repo, "show", "v1:manifest.json")) == local
        card = git(repo, "show", "v1:README.md")
        meta = front_matter(card)
        assert meta["datasets"] == ["digits"] and meta["archs"] == [arch]
        assert meta["seeds"] == [0, 1] and meta["snapshots"] == ["epoch1", "epoch4"]
        assert "| seed1@epoch4 | 0.5410 | 0.4000 | 0.2000 |" in card

    registry = load_registry(env.registry)
    assert registry.hubs == {org: str(folder)}
    assert len(registry.entries) == 8
    for name, entry in registry.entries.items():
        assert entry.sha256 == sha256_file(files[name])
        assert entry.revision in {r.revision for r in result.repos}
        assert entry.hub == org and entry.summary.metrics["test_acc"] > 0.5
    # the same content again: no new commit, the tag on it is reused
    again = a.push("digits/convnet3/*", str(folder), tag="v1")
    assert again.repos[0].revision == result.repos[0].revision


def test_pull_through_hf_endpoint_into_an_empty_home(olah, org, env):
    a = env.zoo("a")
    files = make_zoo(a.paths.zoo)
    originals = {name: path.read_bytes() for name, path in files.items()}
    a.push("digits/*", str(olah.org_folder(org)))

    b = env.zoo("b", endpoint=olah.url)
    pairs = b.pull("digits/*", hub=f"hf://{org}")
    assert sorted(row.name for row, _ in pairs) == sorted(originals)
    for row, path in pairs:
        assert path.is_relative_to(env.hf_cache("b")) and path.read_bytes() == originals[row.name]
        assert row.hub == f"hf://{org}" and row.source == "hub"  # published, not in B's zoo
    assert not b.paths.zoo.exists() and not b.paths.git_cache.exists()

    # offline now: the pulled files load from the HF cache, verified
    ptms = offline(b).load_ptms(["digits/*@epoch4"], "cpu")
    assert [p.sha256 for p in ptms] == [sha256_bytes(originals[p.name]) for p in ptms]

    # a registry whose git folder is not on this machine falls back to the HF endpoint
    with update_registry(env.registry) as registry:
        registry.hubs[org] = str(b.paths.home.parent / "elsewhere" / org)
    assert len(env.zoo("c", endpoint=olah.url).pull("digits/*@epoch1")) == 2
    with pytest.raises(HubError, match="does not exist here; pass --hub URL"):
        env.zoo("d").pull("digits/*@epoch1")


def test_offline_names_exactly_the_missing_entries(olah, org, env):
    a = env.zoo("a")
    make_zoo(a.paths.zoo)
    a.push("digits/*", str(olah.org_folder(org)))
    with update_registry(env.registry) as registry:  # this registry knows the hub only by its HTTP address
        registry.hubs[org] = olah.url
    b = env.zoo("b")
    b.pull("digits/convnet3/seed0@epoch4")
    assert len(offline(b).load_ptms(["digits/convnet3/seed0@epoch4"], "cpu")) == 1
    with pytest.raises(OfflineError) as info:
        offline(b).load_ptms(["digits/*@epoch4", "digits/convnet3/seed1@epoch1"], "cpu")
    assert sorted(info.value.missing) == ["digits/convnet3/seed1@epoch1", "digits/convnet3/seed1@epoch4"]
    message = str(info.value)
    assert "offline (HF_HUB_OFFLINE=1) and 2 PTM file(s) are not in the cache" in message
    assert "digits/convnet3/seed1@epoch4" in message and "digits/convnet3/seed1@epoch1" in message
    assert "seed0@epoch4" not in message and "\n" not in message
    assert len(offline(b).resolve("digits/*")) == 4  # resolving needs no files


def test_a_pinned_older_revision_pulls_the_older_bytes(olah, org, env, tmp_path):
    a = env.zoo("a")
    first = {n: p.read_bytes() for n, p in make_zoo(a.paths.zoo).items()}
    folder = olah.org_folder(org)
    a.push("digits/*", str(folder), tag="first")
    lock = tmp_path / "first.lock"
    a.lock(["digits/*@epoch4"], lock)
    second = {n: p.read_bytes() for n, p in make_zoo(a.paths.zoo, salt=1).items()}
    assert all(first[n] != second[n] for n in first)
    a.push("digits/*", str(folder), tag="second")
    with pytest.raises(ConfigError, match="tag 'first' already names commit"):
        make_zoo(a.paths.zoo, salt=2, seeds=(0,), epochs=(1,))
        a.push("digits/*", str(folder), tag="first")

    b = env.zoo("b", endpoint=olah.url)
    old = b.pull("digits/*", hub=olah.url, revision="first")
    assert {row.name: path.read_bytes() for row, path in old} == first
    assert {row.revision for row, _ in old} == {git(folder / "digits-convnet3", "rev-parse", "first")}
    new = b.pull("digits/*@epoch4", hub=olah.url)
    assert all(path.read_bytes() == second[row.name] for row, path in new)
    # the lockfile made after the first push still loads the first bytes, offline
    ptms = offline(b).load_ptms([f"@{lock}"], "cpu")
    assert [p.sha256 for p in ptms] == [sha256_bytes(first[p.name]) for p in ptms]


def test_a_tampered_blob_is_refused_and_removed_from_the_cache(olah, org, env):
    a = env.zoo("a")
    files = make_zoo(a.paths.zoo, seeds=(0,), epochs=(4,))
    name = "digits/convnet3/seed0@epoch4"
    good = files[name].read_bytes()
    folder = olah.org_folder(org)
    commit = a.push("digits/*", str(folder)).repos[0].revision
    # someone rewrites the file on the hub: a new commit whose bytes differ from the record
    session = GitSession(parse_hub(str(folder)), repo_name("digits", "convnet3"))
    session.open()
    bad_commit = session.commit({"seed0/epoch4.safetensors": good[:-8] + b"tampered"}, "tamper", commit)
    with update_registry(env.registry) as registry:
        registry.entries[name].revision = bad_commit

    b = env.zoo("b", endpoint=olah.url)
    with pytest.raises(IntegrityError, match="refused and removed from the cache"):
        b.pull(name, hub=olah.url)
    repo_cache = env.hf_cache("b") / f"models--{org}--digits-convnet3"
    assert not (repo_cache / "snapshots" / bad_commit / "seed0" / "epoch4.safetensors").exists()
    assert not any(p.is_file() and p.stat().st_size == len(good) for p in (repo_cache / "blobs").iterdir())
    with pytest.raises(IntegrityError, match="refused"):  # the git route refuses it too
        b.pull(name)
    assert not list(b.paths.git_cache.rglob("*.safetensors"))

    # a cached file corrupted after a good pull is detected, removed and fetched again
    with update_registry(env.registry) as registry:
        registry.entries[name].revision = commit
    (_, cached), = b.pull(name, hub=olah.url)
    cached.resolve().write_bytes(b"rot" + good[3:])
    with update_registry(env.registry) as registry:
        registry.hubs[org] = olah.url
    assert b.load_ptms([name], "cpu")[0].sha256 == sha256_bytes(good)
    assert cached.read_bytes() == good


def test_push_to_a_read_only_hub_fails_clearly(olah, org, env):
    a = env.zoo("a")
    make_zoo(a.paths.zoo, seeds=(0,), epochs=(1,))
    with pytest.raises(ConfigError, match="read-only here: push to the git folder it serves"):
        a.push("digits/*", olah.url)
    a = env.zoo("a", endpoint=olah.url)  # olah accepts no uploads: the HF commit API path says so
    with pytest.raises(HubError, match=f"pushing to hf://{org} failed"):
        a.push("digits/*", f"hf://{org}")
    assert load_registry(env.registry).entries == {}


def test_tags_and_hub_urls():
    tags = {"v2025-01-02": "a" * 40, "v2025-01-02.2": "b" * 40}
    assert choose_tag(tags, None, "c" * 40, "2025-01-02") == "v2025-01-02.3"
    assert choose_tag(tags, None, "b" * 40, "2025-01-02") == "v2025-01-02.2"
    assert choose_tag(tags, "rc1", "c" * 40, "2025-01-02") == "rc1"
    for bad in ("-x", "a b", "x..y", "x.lock"):
        with pytest.raises(ConfigError, match="bad tag"):
            choose_tag({}, bad, "c" * 40, "2025-01-02")
    assert parse_hub("hf://lab").repo_id("ddz/digits-convnet3") == "lab/digits-convnet3"
    assert parse_hub("file:///srv/models/lab").url == "/srv/models/lab"
    assert parse_hub("http://127.0.0.1:8090/").url == "http://127.0.0.1:8090"
    for bad in ("s3://bucket", "hf://", "http://host/org", ""):
        with pytest.raises(ConfigError):
            parse_hub(bad)
    assert repo_name("fashion-mnist", "convnet3") == "fashion-mnist-convnet3"
    assert repo_name("a+b", "vgg11") == "a_b-vgg11"


def test_cli_push_lock_pull(olah, org, run_ddz, tmp_path, monkeypatch, capsys):
    from ddz.cli.main import main

    home = tmp_path / "ddz-home"  # run_ddz's DDZ_HOME
    make_zoo(home / "zoo")
    env = {"DDZ_REGISTRY": str(tmp_path / "registry.yaml"), "HF_HOME": str(tmp_path / "hf")}
    folder = olah.org_folder(org)
    # the installed console script, once; then the same app in-process (each process costs seconds)
    done = run_ddz("zoo", "push", "digits/*", "--hub", str(folder), "--tag", "cli", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["repos"][0]["tag"] == "cli"

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDZ_HOME", str(home))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main(["zoo", "lock", "digits/*@best", "-o", "ptms.lock"]) == 0
    rows = json.loads((tmp_path / "ptms.lock").read_text())["ptms"]
    assert [r["name"] for r in rows] == ["digits/convnet3/seed0@epoch4", "digits/convnet3/seed1@epoch4"]
    assert all(r["revision"] == git(folder / "digits-convnet3", "rev-parse", "cli") for r in rows)

    capsys.readouterr()
    assert main(["zoo", "pull", "@ptms.lock", "--hub", olah.url, "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out)["ptms"]
    assert [Path(p["file"]).read_bytes() for p in pulled] == [
        Path(r["local_path"]).read_bytes() for r in rows
    ]
    assert all(Path(p["file"]).is_relative_to(tmp_path / "hf") for p in pulled)

    assert main(["zoo", "pull", "digits/convnet9"]) == 2
    err = capsys.readouterr().err
    assert "no arch matches 'convnet9'" in err and "Traceback" not in err


@pytest.mark.slow  # the client retries for about 20 s before it gives up
def test_an_unreachable_hub_is_a_hub_error_raised_from_its_cause(olah, org, env, run_ddz):
    """The registry names a hub where nothing listens: the HubError keeps the client's error as
    its cause; the CLI prints one line (no retry warnings), and with --debug the chain."""
    import socket

    a = env.zoo("a")
    make_zoo(a.paths.zoo)
    a.push("digits/*", str(olah.org_folder(org)))
    with socket.socket() as probe:  # a free loopback port, closed again: connections are refused
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with update_registry(env.registry) as registry:
        registry.hubs[org] = dead
    b = env.zoo("b")
    home = b.paths.home  # the CLI below finds the registry in its working directory
    with pytest.raises(HubError) as info:
        b.pull("digits/convnet3/seed0@epoch4")
    assert info.value.__cause__ is not None and dead in str(info.value)
    plain = run_ddz("zoo", "pull", "digits/convnet3/seed0@epoch4", env={"DDZ_HOME": str(home)})
    lines = plain.stderr.strip().splitlines()  # the pull's progress bar, then the error
    assert plain.returncode == 2 and lines[-1].startswith("error: cannot download"), plain.stderr
    assert "Traceback" not in plain.stderr and "Retrying" not in plain.stderr
    assert sum("error" in line.lower() for line in lines) == 1
    debug = run_ddz("--debug", "zoo", "pull", "digits/convnet3/seed0@epoch4", env={"DDZ_HOME": str(home)})
    assert debug.returncode == 2 and "direct cause" in debug.stderr + debug.stdout
