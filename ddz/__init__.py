"""ddz: dataset distillation guided by pre-trained models.

The Python API (docs/api.md):

    from ddz import Zoo, ZooPaths, RunRequest, DistillConfig, GuidanceConfig, EvalConfig, run, evaluate

    report = run(RunRequest("digits", DistillConfig(method="dm", ipc=10)), RunContext(zoo))

The names load on first use, so `import ddz` (and `ddz --help`) stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "Zoo": "ddz.zoo.api",
    "ZooPaths": "ddz.zoo.paths",
    "TrainRecipe": "ddz.zoo.recipes",
    "LaunchConfig": "ddz.zoo.launch",
    "load_dataset": "ddz.data",
    "DistillConfig": "ddz.distill.methods",
    "MTTConfig": "ddz.distill.methods",
    "RDEDConfig": "ddz.distill.methods",
    "SRe2LConfig": "ddz.distill.methods",
    "METHODS": "ddz.distill.methods",
    "GuidanceConfig": "ddz.distill.guidance",
    "EvalConfig": "ddz.distill.evaluate",
    "RunRequest": "ddz.distill.request",
    "EvalRequest": "ddz.distill.request",
    "RunContext": "ddz.distill.run",
    "RunReport": "ddz.distill.report",
    "run": "ddz.distill.run",
    "evaluate": "ddz.distill.run",
    "load_synset": "ddz.distill.synset",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'ddz' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
