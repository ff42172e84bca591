"""External PTMs built: the model wrappers for torchvision and open_clip (their specs and checks:
ddz.zoo.external_spec; their rows: ddz.zoo.sources.external)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddz.errors import ConfigError, DDZError, IntegrityError, first_line
from ddz.io import sha256_bytes, sha256_file
from ddz.seeding import derive_seed
from ddz.zoo.external_spec import ExternalSpec
from ddz.zoo.ptm import PTM
from ddz.zoo.records import Resolved


class TorchvisionClassifier(nn.Module):
    """A torchvision classifier with a `.fc` head: embed = pooled features, forward = logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.classifier = model.fc
        model.fc = nn.Identity()
        self.body = model

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class ClipImageEncoder(nn.Module):
    """CLIP's image tower: embed = image features; it has no classifier, so forward refuses."""

    def __init__(self, visual: nn.Module, name: str):
        super().__init__()
        self.visual = visual
        self.name = name

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise DDZError(
            f"{self.name} is an image encoder without a classifier: use it with --guidance cclom "
            "(which uses embed), not clom"
        )


# ---------------------------------------------------------------------------------------------
# Building


def _missing(name: str, spec: ExternalSpec, where: str) -> DDZError:
    return DDZError(
        f"weights for {name} ({spec.library} {spec.model}, {spec.weights}) are not in {where} and this "
        "machine is offline; fetch them once online, or set weights_file for it under `external` in "
        "registry.yaml"
    )


def _verified_file(name: str, spec: ExternalSpec, path: Path) -> str:
    if not path.is_file():
        raise DDZError(f"weights_file {path} for {name} does not exist; fix `external` in registry.yaml")
    actual = sha256_file(path)
    if spec.sha256 and actual != spec.sha256:
        raise IntegrityError(
            f"{path} (weights of {name}) has sha256 {actual}, registry.yaml says {spec.sha256}; "
            "replace the file or fix the entry"
        )
    return actual


def _random_init(name: str, build: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(0, "external-random-init", name))
        return build()


def _torchvision(name: str, spec: ExternalSpec, offline: bool) -> tuple[nn.Module, list[str], str | None]:
    from torchvision.models import get_model, get_model_weights

    try:
        enum = get_model_weights(spec.model)
    except (ValueError, KeyError):
        raise ConfigError(f"torchvision has no model {spec.model!r} (external {name})") from None
    default = next(iter(enum))
    weights = default
    if spec.weights:
        member = spec.weights.rsplit(".", 1)[-1]
        if member not in enum.__members__:
            raise ConfigError(
                f"torchvision has no weights {spec.weights!r} for {spec.model}; "
                f"valid: {', '.join(enum.__members__)}"
            )
        weights = enum[member]
    categories = list(weights.meta["categories"])
    if spec.weights is None and not spec.weights_file:
        model = _random_init(name, lambda: get_model(spec.model, weights=None, num_classes=len(categories)))
        return model, categories, None
    if spec.weights_file:
        path = Path(spec.weights_file)
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if not path.is_file():
            if offline:
                raise _missing(name, spec, str(path.parent))
            try:  # torch hub's own downloader into its own cache, checking the hash prefix in the name
                path.parent.mkdir(parents=True, exist_ok=True)
                prefix = path.stem.rsplit("-", 1)[-1]
                torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=prefix, progress=False)
            except (OSError, RuntimeError) as error:
                raise DDZError(
                    f"cannot download the {spec.weights} weights for {name} ({type(error).__name__}); "
                    f"put {path.name} in {path.parent} or set weights_file in registry.yaml"
                ) from None
    sha = _verified_file(name, spec, path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = get_model(spec.model, weights=None, num_classes=len(categories))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = first_line(error)
        raise IntegrityError(f"{path} does not hold {spec.model} weights ({first})") from None
    return model, categories, sha


def _open_clip_cached(spec: ExternalSpec, hf_cache: Path) -> bool:
    """Whether open_clip's pretrained weights for the spec are already in a local cache."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(spec.model, spec.weights)
    if "file" in cfg:
        return Path(cfg["file"]).is_file()
    if hub := cfg.get("hf_hub"):
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        return any(isinstance(try_to_load_from_cache(repo, n, cache_dir=hf_cache), str) for n in names)
    if url := cfg.get("url"):
        return (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file()
    return False


def _open_clip(name: str, spec: ExternalSpec, offline: bool, hf_cache: Path
               ) -> tuple[nn.Module, list[str], str | None]:
    import open_clip

    if spec.model not in open_clip.list_models():
        raise ConfigError(f"open_clip has no model {spec.model!r} (external {name})")
    sha = None
    if spec.weights_file:
        sha = _verified_file(name, spec, Path(spec.weights_file))
        cfg = open_clip.get_pretrained_cfg(spec.model, spec.weights or "") if spec.weights else {}
        model = open_clip.create_model(
            spec.model, pretrained=spec.weights_file, force_quick_gelu=bool(cfg.get("quick_gelu")),
        )
    elif spec.weights:
        if spec.weights not in open_clip.list_pretrained_tags_by_model(spec.model):
            raise ConfigError(
                f"open_clip has no weights {spec.weights!r} for {spec.model}; valid: "
                f"{', '.join(open_clip.list_pretrained_tags_by_model(spec.model))}"
            )
        if offline and not _open_clip_cached(spec, hf_cache):
            raise _missing(name, spec, f"the Hugging Face cache ({hf_cache})")
        try:
            model = open_clip.create_model(spec.model, pretrained=spec.weights, cache_dir=str(hf_cache))
        except (OSError, RuntimeError) as error:
            raise DDZError(
                f"cannot load the {spec.weights} weights for {name}: {first_line(error)}; "
                "fetch them online once or set weights_file in registry.yaml"
            ) from None
    else:
        model = _random_init(name, lambda: open_clip.create_model(spec.model, pretrained=None))
    return model.visual, [], sha


def build_external(
    name: str, spec: ExternalSpec, hf_cache: Path, offline: bool = False
) -> tuple[nn.Module, list[str], str | None]:
    """(net with embed/forward, class names, sha256 of the weights file or None)."""
    if spec.library == "torchvision":
        model, classes, sha = _torchvision(name, spec, offline)
        return TorchvisionClassifier(model), classes, sha
    visual, classes, sha = _open_clip(name, spec, offline, hf_cache)
    return ClipImageEncoder(visual, name), classes, sha


def load_external(row: Resolved, hf_cache: Path, device: str | torch.device = "cpu",
                  offline: bool = False) -> PTM:
    """A resolved external row (its spec) as a PTM on `device`."""
    spec = row.spec
    if spec is None:
        raise ConfigError(f"{row.name} is not an external PTM (source {row.source})")
    net, classes, sha = build_external(row.name, spec, hf_cache, offline)
    if sha is None:  # random weights are a function of the name and spec: identify them by those
        sha = sha256_bytes(json.dumps({"random_init": row.name, **spec.to_json()}, sort_keys=True).encode())
    return PTM(
        name=row.name, sha256=sha, net=net.to(device).eval(), classes=classes,
        mean=tuple(spec.mean), std=tuple(spec.std), image_size=spec.image_size, in_channels=3,
    )
