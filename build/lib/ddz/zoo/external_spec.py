"""External PTMs: torchvision's ImageNet ResNet-18 and open_clip's RN50 image encoder, wrapped as PTMs.

They are registry entries like any other (`imagenet/resnet18@torchvision`, `clip/RN50@openai`):
a spec says which library builds the model and where its weights live. Weights come from the
library's own cache (torch hub's checkpoints folder; the Hugging Face cache for open_clip) or from
a `weights_file` named in registry.yaml; `weights: null` builds random weights (for tests).
Nothing is unpickled: torchvision checkpoints are read with torch.load(weights_only=True).

This module holds the specs and their checks, and imports no torch (listing the zoo needs no
torch); ddz.zoo.sources.external builds and loads the models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ddz.errors import ConfigError

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
