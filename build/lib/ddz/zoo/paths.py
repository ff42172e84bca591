"""Where the zoo lives, as one explicit value: the library reads no environment variable for it.

The CLI builds a `ZooPaths` from the environment once (`ZooPaths.from_env`); the demo and tests
build one under a folder (`ZooPaths.under`); everything below takes it as an argument.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ZooPaths:
    home: Path  # DDZ_HOME: zoo/, cache/git/, jobs/
    registry: Path  # registry.yaml
    hf_cache: Path  # huggingface_hub's cache (the HTTP hubs' files, open_clip's weights)
    hf_endpoint: str | None = None  # HF_ENDPOINT: the server behind hf:// hubs and hub mirrors

    @property
    def zoo(self) -> Path:
        return self.home / "zoo"

    @property
    def git_cache(self) -> Path:
        return self.home / "cache" / "git"

    @property
    def jobs(self) -> Path:
        return self.home / "jobs"

    @classmethod
    def under(cls, home: Path, registry: Path | None = None, hf_cache: Path | None = None,
              hf_endpoint: str | None = None) -> ZooPaths:
        """Everything inside `home` (the registry at home/registry.yaml unless given)."""
        home = Path(home).absolute()
        return cls(home, Path(registry or home / "registry.yaml").absolute(),
                   Path(hf_cache or home / "hf" / "hub").absolute(), hf_endpoint)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> ZooPaths:
        """DDZ_HOME (default ~/.cache/ddz); the registry: DDZ_REGISTRY, else ./registry.yaml when
        there is one, else DDZ_HOME/registry.yaml; HF_HUB_CACHE or HF_HOME/hub; HF_ENDPOINT."""
        env = os.environ if environ is None else environ
        cwd = Path.cwd() if cwd is None else cwd
        home = Path(env.get("DDZ_HOME") or Path.home() / ".cache" / "ddz").expanduser()
        if env.get("DDZ_REGISTRY"):
            registry = Path(env["DDZ_REGISTRY"]).expanduser()
        elif (cwd / "registry.yaml").is_file():
            registry = cwd / "registry.yaml"
        else:
            registry = home / "registry.yaml"
        if env.get("HF_HUB_CACHE"):
            hf_cache = Path(env["HF_HUB_CACHE"]).expanduser()
        else:
            hf_home = env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
            hf_cache = Path(hf_home).expanduser() / "hub"
        endpoint = (env.get("HF_ENDPOINT") or "").rstrip("/") or None
        return cls(home.absolute(), (cwd / registry).absolute(), hf_cache.absolute(), endpoint)


def offline_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """HF_HUB_OFFLINE or DDZ_OFFLINE set to 1/true/yes/on."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip().lower() in TRUE for name in ("HF_HUB_OFFLINE", "DDZ_OFFLINE"))
