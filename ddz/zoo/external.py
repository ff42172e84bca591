"""External PTMs: torchvision's ImageNet ResNet-18 and open_clip's RN50 image encoder, wrapped as PTMs.

They are registry entries like any other (`imagenet/resnet18@torchvision`, `clip/RN50@openai`):
a spec says which library builds the model and where its weights live. Weights come from the
library's own cache (torch hub's checkpoints folder; the Hugging Face cache for open_clip) or from
a `weights_file` named in registry.yaml; `weights: null` builds random weights (for tests).
Nothing is unpickled: torchvision checkpoints are read with torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddz.errors import ConfigError, DDZError, IntegrityError
from ddz.io import sha256_bytes, sha256_file
from ddz.seeding import derive_seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LIBRARIES = ("torchvision", "open_clip")


@dataclass(frozen=True)
class ExternalSpec:
    """How to build one external PTM."""

    library: str
    model: str
    weights: str | None = None
    weights_file: str | None = None
    sha256: str | None = None
    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExternalSpec:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)


BUILTIN: dict[str, ExternalSpec] = {
    "imagenet/resnet18@torchvision": ExternalSpec(
        "torchvision", "resnet18", "ResNet18_Weights.IMAGENET1K_V1", image_size=224,
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
        description="torchvision ResNet-18, ImageNet-1k (top-1 69.8%); embed = 512 pooled features",
    ),
    "clip/RN50@openai": ExternalSpec(
        "open_clip", "RN50", "openai", image_size=224, mean=CLIP_MEAN, std=CLIP_STD,
        description="OpenAI CLIP RN50 image encoder (open_clip); embed = 1024-d features, no classifier",
    ),
}


class SpecError(ConfigError):
    """A bad field in an external spec; `key` says which."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def check_external(name: str, raw: Any, base: Path | None = None) -> ExternalSpec:
    """Validate an `external` entry of registry.yaml (merged over the built-in of that name)."""
    if not isinstance(raw, dict):
        raise SpecError("", f"external {name!r} must be a mapping of library, model, weights, ...")
    allowed = {f.name for f in fields(ExternalSpec)}
    for key in raw:
        if key not in allowed:
            valid = ", ".join(sorted(allowed))
            raise SpecError(key, f"external {name!r}: unknown key {key!r}; valid: {valid}")
    defaults = {"image_size": 224, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    merged = {**(BUILTIN[name].to_json() if name in BUILTIN else defaults), **raw}
    for key in ("library", "model"):
        if not isinstance(merged.get(key), str) or not merged[key]:
            raise SpecError(key, f"external {name!r} needs {key!r}")
    if merged["library"] not in LIBRARIES:
        raise SpecError("library", f"external {name!r}: library must be one of {', '.join(LIBRARIES)}")
    for key in ("weights", "weights_file", "sha256", "description"):
        if merged.get(key) is not None and not isinstance(merged[key], str):
            raise SpecError(key, f"external {name!r}: {key} must be a string (quote it) or null")
    sha = merged.get("sha256")
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise SpecError("sha256", f"external {name!r}: sha256 must be 64 lowercase hex digits")
    size = merged.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise SpecError("image_size", f"external {name!r}: image_size must be a positive integer")
    for key in ("mean", "std"):
        value = merged.get(key)
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise SpecError(key, f"external {name!r}: {key} must be a list of 3 numbers")
    if merged.get("weights_file") and base is not None:
        merged["weights_file"] = str((base / Path(merged["weights_file"]).expanduser()).absolute())
    return ExternalSpec.from_json(merged)


def external_specs(overrides: dict[str, dict[str, Any]], base: Path | None = None) -> dict[str, ExternalSpec]:
    """The built-in external PTMs with registry.yaml's `external` section applied over them."""
    specs = dict(BUILTIN)
    for name, raw in overrides.items():
        specs[name] = check_external(name, raw, base)
    return specs


# ---------------------------------------------------------------------------------------------
# Wrappers: the `embed` / `forward` face that guidance expects


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
        first = str(error).splitlines()[0]
        raise IntegrityError(f"{path} does not hold {spec.model} weights ({first})") from None
    return model, categories, sha


def _open_clip_cached(spec: ExternalSpec) -> bool:
    """Whether open_clip's pretrained weights for the spec are already in a local cache."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    from ddz.zoo.hub import hf_cache_dir

    cfg = open_clip.get_pretrained_cfg(spec.model, spec.weights)
    if "file" in cfg:
        return Path(cfg["file"]).is_file()
    if hub := cfg.get("hf_hub"):
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        return any(isinstance(try_to_load_from_cache(repo, n, cache_dir=hf_cache_dir()), str) for n in names)
    if url := cfg.get("url"):
        return (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file()
    return False


def _open_clip(name: str, spec: ExternalSpec, offline: bool) -> tuple[nn.Module, list[str], str | None]:
    import open_clip

    from ddz.zoo.hub import hf_cache_dir

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
        if offline and not _open_clip_cached(spec):
            raise _missing(name, spec, f"the Hugging Face cache ({hf_cache_dir()})")
        try:
            model = open_clip.create_model(spec.model, pretrained=spec.weights, cache_dir=str(hf_cache_dir()))
        except (OSError, RuntimeError) as error:
            raise DDZError(
                f"cannot load the {spec.weights} weights for {name}: {str(error).splitlines()[0]}; "
                "fetch them online once or set weights_file in registry.yaml"
            ) from None
    else:
        model = _random_init(name, lambda: open_clip.create_model(spec.model, pretrained=None))
    return model.visual, [], sha


def build_external(
    name: str, spec: ExternalSpec, offline: bool = False
) -> tuple[nn.Module, list[str], str | None]:
    """(net with embed/forward, class names, sha256 of the weights file or None)."""
    if spec.library == "torchvision":
        model, classes, sha = _torchvision(name, spec, offline)
        return TorchvisionClassifier(model), classes, sha
    visual, classes, sha = _open_clip(name, spec, offline)
    return ClipImageEncoder(visual, name), classes, sha


def load_external(row: Any, device: str | torch.device = "cpu", offline: bool = False):
    """A resolved external row (its spec in `metadata`) as a PTM on `device`."""
    from ddz.zoo.ptm import PTM

    spec = ExternalSpec.from_json(row.metadata)
    net, classes, sha = build_external(row.name, spec, offline)
    if sha is None:  # random weights are a function of the name and spec: identify them by those
        sha = sha256_bytes(json.dumps({"random_init": row.name, **spec.to_json()}, sort_keys=True).encode())
    return PTM(
        name=row.name, sha256=sha, net=net.to(device).eval(), classes=classes,
        mean=tuple(spec.mean), std=tuple(spec.std), image_size=spec.image_size, in_channels=3,
        metadata={"name": row.name, "external": spec.to_json()},
    )
