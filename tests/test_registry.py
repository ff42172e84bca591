"""registry.yaml (validation with line numbers, concurrent writers), resolution over the local zoo,
registry entries and external sources, lockfiles, load_ptms, and the external PTM wrappers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from olah_server import make_zoo

from ddz.errors import ConfigError, DDZError, IntegrityError, QueryError
from ddz.io import sha256_file
from ddz.zoo.api import Zoo
from ddz.zoo.external_spec import BUILTIN
from ddz.zoo.lockfile import read_lock, write_lock
from ddz.zoo.paths import ZooPaths, offline_from_env
from ddz.zoo.records import SnapshotSummary
from ddz.zoo.registry import DEFAULT_HEADER, Entry, load_registry, parse_registry, update_registry

REPO_ROOT = Path(__file__).resolve().parents[1]
SHA = "ab" * 32
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def zoo(tmp_path) -> Zoo:
    """A private zoo home, registry and Hugging Face cache, online."""
    return Zoo(ZooPaths.under(tmp_path / "home", registry=tmp_path / "registry.yaml"))


# --- the file -------------------------------------------------------------------------------------


def test_the_committed_registry_is_valid_and_documents_its_format():
    registry = load_registry(REPO_ROOT / "registry.yaml")
    text = (REPO_ROOT / "registry.yaml").read_text()
    assert text.startswith("# ddz registry")
    for word in ("hubs:", "entries:", "external:", "revision:", "sha256:", "weights_file:", "DDZ_REGISTRY"):
        assert word in registry.header
    assert set(registry.external_specs()) >= {"imagenet/resnet18@torchvision", "clip/RN50@openai"}
    # rewriting it keeps the header and the data
    again = parse_registry(registry.to_text(), registry.path)
    assert again.header == registry.header and again.external == registry.external


def test_paths_from_the_environment(tmp_path):
    env = {"DDZ_HOME": str(tmp_path / "h"), "HF_HOME": str(tmp_path / "hf")}
    paths = ZooPaths.from_env(env, cwd=tmp_path)
    assert paths.registry == tmp_path / "h" / "registry.yaml" and paths.zoo == tmp_path / "h" / "zoo"
    assert paths.hf_cache == tmp_path / "hf" / "hub" and paths.hf_endpoint is None
    (tmp_path / "registry.yaml").write_text("")
    assert ZooPaths.from_env(env, cwd=tmp_path).registry == tmp_path / "registry.yaml"
    env.update(DDZ_REGISTRY="other.yaml", HF_HUB_CACHE=str(tmp_path / "c"), HF_ENDPOINT="http://127.0.0.1:9/")
    paths = ZooPaths.from_env(env, cwd=tmp_path)
    assert (paths.registry, paths.hf_cache, paths.hf_endpoint) == (
        tmp_path / "other.yaml", tmp_path / "c", "http://127.0.0.1:9")
    assert not offline_from_env(env) and offline_from_env({"HF_HUB_OFFLINE": "1"})


GOOD_ENTRY = f"""\
version: 1
hubs:
  lab: /srv/hub/models/lab
entries:
  digits/convnet3/seed0@epoch4:
    hub: lab
    repo: lab/digits-convnet3
    revision: {COMMIT}
    path: seed0/epoch4.safetensors
    sha256: {SHA}
    metadata: {{seed: 0, epoch: 4, metrics: {{test_acc: 0.9}}}}
"""


@pytest.mark.parametrize("text, where, message", [
    ("version: 1\nhubs: [a, b]\n", ":2:7:", "hubs must be a mapping"),
    ("version: 2\n", ":1:10:", "version must be 1"),
    ("verison: 1\n", ":1:1:", "unknown key 'verison' in the registry; valid keys: version"),
    ("hubs:\n  a: ftp://x\n", ":2:6:", "unknown scheme 'ftp'"),
    ("hubs:\n  a: /x/models/lab\nhubs:\n  b: /y\n", ":3:1:", "'hubs' appears twice"),
    (GOOD_ENTRY.replace("hub: lab", "hub: elsewhere"), ":6:10:", "hub 'elsewhere' is not under hubs (lab)"),
    (GOOD_ENTRY.replace(COMMIT, "main"), ":8:15:", "revision 'main' is malformed (expected a 40-hex"),
    (GOOD_ENTRY.replace(SHA, "abc"), ":10:13:", "sha256 'abc' is malformed"),
    (GOOD_ENTRY.replace("seed0/epoch4.safetensors", "../x"), ":9:11:", "relative path inside the repo"),
    (GOOD_ENTRY.replace("    path: seed0/epoch4.safetensors\n", ""), ":6:5:", "lacks 'path'"),
    (GOOD_ENTRY.replace("repo: lab/", "repo: "), ":7:11:", "(expected ORG/NAME)"),
    (GOOD_ENTRY.replace("seed0@epoch4:", "seed0:"), ":5:3:", "is not a zoo name"),
    (GOOD_ENTRY.replace("seed0@epoch4:", "seed0@best:"), ":5:3:", "write DATASET/ARCH/seedN@epochE"),
    (GOOD_ENTRY.replace("    metadata", "    metdata"), ":11:5:", "unknown key 'metdata'"),
    ("external:\n  x/y@z:\n    library: keras\n    model: m\n", ":3:14:", "library must be one of"),
    ("external:\n  x/y@z:\n    model: m\n", ":3:5:", "needs 'library'"),
    ("external:\n  imagenet/resnet18@torchvision:\n    mean: [1, 2]\n", ":3:11:", "mean must be a list of 3"),
    ("external:\n  imagenet/resnet18/seed1@x:\n    model: m\n", ":2:3:", "(no seed)"),
    ("hubs: {a: [}\n", ":1:12:", "not valid YAML"),
])
def test_validation_names_the_line_and_the_problem(tmp_path, text, where, message):
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    assert str(info.value).startswith(f"{path}{where}"), str(info.value)
    assert message in str(info.value)


def test_a_valid_registry_round_trips(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text("# my own header\n\n" + GOOD_ENTRY)
    registry = load_registry(path)
    assert registry.hubs == {"lab": "/srv/hub/models/lab"}
    entry = registry.entries["digits/convnet3/seed0@epoch4"]
    assert (entry.revision, entry.sha256, entry.summary.metrics) == (COMMIT, SHA, {"test_acc": 0.9})
    with update_registry(path) as reg:
        reg.entries["digits/convnet3/seed1@epoch4"] = Entry("lab", "lab/digits-convnet3", COMMIT,
                                                            "seed1/epoch4.safetensors", SHA)
    text = path.read_text()
    assert text.startswith("# my own header\n")
    assert set(load_registry(path).entries) == {
        "digits/convnet3/seed0@epoch4", "digits/convnet3/seed1@epoch4"
    }
    assert not (tmp_path / ".registry.yaml.tmp").exists()
    assert load_registry(tmp_path / "missing.yaml").header == DEFAULT_HEADER


WRITER = """
import sys
from ddz.zoo.registry import Entry, update_registry
path, worker, count, commit, sha = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
for i in range(count):
    with update_registry(path) as registry:
        hub = registry.add_hub("/srv/hub/models/lab")
        registry.entries[f"digits/convnet3/seed{worker}@epoch{i}"] = Entry(
            hub, "lab/digits-convnet3", commit, f"seed{worker}/epoch{i}.safetensors", sha)
"""


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "registry.yaml"
    workers, count = 4, 8
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(count), COMMIT, SHA],
                              stderr=subprocess.PIPE) for w in range(workers)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    registry = load_registry(path)
    assert len(registry.entries) == workers * count
    assert registry.hubs == {"lab": "/srv/hub/models/lab"}


# --- resolution -----------------------------------------------------------------------------------


def test_resolve_over_the_local_zoo_registry_and_external(zoo, tmp_path):
    files = make_zoo(zoo.paths.zoo, seeds=(0, 1, 2), epochs=(1, 4, 10))
    published = "digits/convnet3/seed0@epoch4"
    with update_registry(zoo.paths.registry) as reg:
        hub = reg.add_hub(str(tmp_path / "hub" / "lab"))
        # the same bytes as the local file: merged into the local row
        reg.entries[published] = Entry(hub, "lab/digits-convnet3", COMMIT, "seed0/epoch4.safetensors",
                                       sha256_file(files[published]))
        # only on the hub
        reg.entries["cifar10/vgg11/seed3@epoch20"] = Entry(hub, "lab/cifar10-vgg11", COMMIT,
                                                           "seed3/epoch20.safetensors", SHA,
                                                           SnapshotSummary(3, 20, None, {"test_acc": 0.7}))
    rows = {r.name: r for r in zoo.resolve("*")}
    assert len(rows) == 9 + 1 + 2
    assert rows[published].source == "local" and rows[published].revision == COMMIT
    assert rows[published].local_path == str(files[published])
    assert rows["digits/convnet3/seed1@epoch4"].hub is None
    assert rows["cifar10/vgg11/seed3@epoch20"].source == "hub"
    assert rows["cifar10/vgg11/seed3@epoch20"].hub == str(tmp_path / "hub" / "lab")
    assert rows["imagenet/resnet18@torchvision"].source == "external"
    assert rows["clip/RN50@openai"].spec.library == "open_clip"
    expected = [f"digits/convnet3/seed{s}@epoch4" for s in range(3)]
    assert [r.name for r in zoo.resolve("digits/*@epoch4")] == expected
    assert [r.name for r in zoo.resolve("*/*/*@best", where="test_acc>0.6015")] == [
        "cifar10/vgg11/seed3@epoch20", "digits/convnet3/seed2@epoch10"
    ]
    with pytest.raises(QueryError, match="nearest archs: convnet3"):
        zoo.resolve("digits/convnet4")


def test_load_ptms_verifies_freezes_and_locks(zoo, tmp_path):
    files = make_zoo(zoo.paths.zoo)
    ptms = zoo.load_ptms(["digits/*@epoch4"], "cpu")
    assert [p.name for p in ptms] == ["digits/convnet3/seed0@epoch4", "digits/convnet3/seed1@epoch4"]
    assert all(not p.requires_grad for p in ptms[0].net.parameters())
    assert ptms[0].sha256 == sha256_file(files[ptms[0].name])
    assert ptms[0].net(torch.zeros(2, 1, 16, 16)).shape == (2, 10)

    for suffix in ("json", "yaml"):
        lock = tmp_path / f"ptms.{suffix}"
        write_lock(lock, zoo.resolve("digits/convnet3/*@best"), ["digits/convnet3/*@best"])
        document = json.loads(lock.read_text()) if suffix == "json" else yaml.safe_load(lock.read_text())
        assert [row["name"] for row in document["ptms"]] == ["digits/convnet3/seed0@epoch4",
                                                             "digits/convnet3/seed1@epoch4"]
        assert [p.sha256 for p in zoo.load_ptms([f"@{lock}"], "cpu")] == [p.sha256 for p in ptms]
    # the same PTM from two queries is loaded once
    assert len(zoo.load_ptms(["digits/*@epoch4", f"@{lock}"], "cpu")) == 2

    victim = files["digits/convnet3/seed1@epoch4"]
    victim.write_bytes(victim.read_bytes()[:-4] + b"XXXX")
    with pytest.raises(IntegrityError, match="fails its integrity check"):
        zoo.load_ptms([f"@{lock}"], "cpu")


@pytest.mark.parametrize("document, message", [
    ("{}", "not a ddz lockfile"),
    ('{"format": "ddz.lock/1", "ptms": []}', "lists no PTMs"),
    ('{"format": "ddz.lock/1", "ptms": [{"name": "a/b/seed0@epoch1", "source": "web"}]}', "source must be"),
    ('{"format": "ddz.lock/1", "ptms": [{"name": "a/b/seed0@epoch1", "source": "hub", "sha256": "' + SHA
     + '", "hub": "/x/lab", "repo": "lab/a-b", "revision": "main", "path": "p"}]}', "commit-sha revision"),
    ("not json", "not valid JSON"),
])
def test_bad_lockfiles_are_refused(tmp_path, document, message):
    path = tmp_path / "ptms.lock"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message):
        read_lock(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_lock(tmp_path / "missing.lock")


# --- external PTMs --------------------------------------------------------------------------------


RANDOM_EXTERNALS = """\
external:
  imagenet/resnet18@random:
    library: torchvision
    model: resnet18
    weights: null
  clip/RN50@random:
    library: open_clip
    model: RN50
    weights: null
    mean: [0.48145466, 0.4578275, 0.40821073]
    std: [0.26862954, 0.26130258, 0.27577711]
"""


def test_external_ptms_resolve_and_wrap(zoo, tmp_path):
    (tmp_path / "registry.yaml").write_text(RANDOM_EXTERNALS)
    resnet, clip = zoo.load_ptms(["imagenet/resnet18@random", "clip/RN50@random"], "cpu")
    x = torch.randn(1, 3, 224, 224)
    assert resnet.net.embed(x).shape == (1, 512)
    assert resnet.net(x).shape == (1, 1000) and resnet.num_classes == 1000
    assert resnet.classes[0] == "tench" and resnet.image_size == 224 and resnet.in_channels == 3
    assert resnet.mean == BUILTIN["imagenet/resnet18@torchvision"].mean
    assert clip.net.embed(x).shape == (1, 1024)
    assert clip.mean == BUILTIN["clip/RN50@openai"].mean
    with pytest.raises(DDZError, match="without a classifier: use it with --guidance cclom"):
        clip.net(x)
    # random weights are a function of the name alone
    again = zoo.load_ptms(["imagenet/resnet18@random"], "cpu")[0]
    assert again.sha256 == resnet.sha256 and len(resnet.sha256) == 64


def test_external_weights_file_is_verified(zoo, tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18(weights=None).state_dict().items()}, str(weights))
    digest = sha256_file(weights)
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        "external:\n  imagenet/resnet18@torchvision:\n    weights_file: resnet18.safetensors\n"
        f"    sha256: '{digest}'\n"
    )
    ptm = zoo.load_ptms(["imagenet/resnet18@torchvision"], "cpu")[0]
    assert ptm.sha256 == digest
    from safetensors.torch import load_file

    assert torch.equal(ptm.net.classifier.weight, load_file(str(weights))["fc.weight"])
    registry.write_text(registry.read_text().replace(digest, "0" * 64))
    with pytest.raises(IntegrityError, match="registry.yaml says 0000"):
        zoo.load_ptms(["imagenet/resnet18@torchvision"], "cpu")


def test_missing_external_weights_offline_is_one_clear_line(zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torchvision's own cache
    zoo = Zoo(zoo.paths, offline=True)
    cases = (("imagenet/resnet18@torchvision", "checkpoints"), ("clip/RN50@openai", "Hugging Face cache"))
    for name, where in cases:
        with pytest.raises(DDZError) as info:
            zoo.load_ptms([name], "cpu")
        message = str(info.value)
        assert "\n" not in message and name in message and where in message and "offline" in message
    # weights in torch hub's own cache are found there (and read without unpickling code)
    from torchvision.models import resnet18

    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), cached)
    ptm = zoo.load_ptms(["imagenet/resnet18@torchvision"], "cpu")[0]
    assert ptm.sha256 == sha256_file(cached) and ptm.classes[1] == "goldfish"
