"""Hub addresses: what a hub URL names, and the repository of a (dataset, arch) on it.

    /path/to/models/ORG, file:///path/...   git repos in a folder: ORG/<dataset>-<arch> is
                                            FOLDER/<dataset>-<arch> (bare repos, branch main)
    http://host:port                         a server speaking the Hugging Face API (pull only)
    hf://ORG                                 huggingface.co, or HF_ENDPOINT when it is set
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ddz.errors import ConfigError
from ddz.zoo.records import HubKind

HUGGINGFACE = "https://huggingface.co"
_ORG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Hub:
    kind: HubKind
    url: str  # normalised: an absolute folder, an http(s) endpoint, or hf://ORG
    org: str | None = None

    @property
    def folder(self) -> Path:
        return Path(self.url)

    def endpoint(self, hf_endpoint: str | None = None) -> str:
        """The HTTP server: the hub itself, or for hf:// hubs HF_ENDPOINT (default huggingface.co)."""
        if self.kind == "http":
            return self.url
        if self.kind == "hf":
            return (hf_endpoint or HUGGINGFACE).rstrip("/")
        raise ConfigError(f"{self.url} is a folder of git repos, not an HTTP hub")

    def repo_id(self, repo: str) -> str:
        """The id of `repo` (ORG/NAME, as recorded) on this hub: folder and hf hubs bring their org."""
        return f"{self.org}/{repo.rsplit('/', 1)[-1]}" if self.org else repo


def parse_hub(url: str, base: Path | None = None) -> Hub:
    """Read a hub URL (a folder path, file://, http(s)://, hf://ORG); ConfigError if malformed.
    A relative folder is read against `base` (default: the working directory)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("empty hub URL; give a folder, file://..., http://host:port or hf://ORG")
    url = url.strip()
    scheme = urlparse(url).scheme if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url) else ""
    if scheme == "hf":
        org = url[len("hf://"):].strip("/")
        if not _ORG.fullmatch(org):
            raise ConfigError(f"hub {url!r}: write hf://ORG (one organisation or user name)")
        return Hub("hf", f"hf://{org}", org)
    if scheme in ("http", "https"):
        parsed = urlparse(url)
        if not parsed.netloc or parsed.path.strip("/"):
            raise ConfigError(f"hub {url!r}: an HTTP hub is an endpoint, e.g. http://127.0.0.1:8090")
        return Hub("http", f"{parsed.scheme}://{parsed.netloc}")
    if scheme == "file":
        path = Path(unquote(urlparse(url).path))
    elif scheme:
        raise ConfigError(f"hub {url!r}: unknown scheme {scheme!r}; use a folder, file://, http(s):// or hf://")
    else:
        path = Path(url).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    path = Path(os.path.normpath(path.absolute()))
    org = path.name
    if not _ORG.fullmatch(org):
        raise ConfigError(f"hub folder {path}: its name is the org of its repos and must be a plain name")
    return Hub("git", str(path), org)


def repo_name(dataset: str, arch: str) -> str:
    """The hub repository of a (dataset, arch): `<dataset>-<arch>` in Hugging Face's name rules."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{dataset}-{arch}")
    return re.sub(r"([-.])\1+", r"\1", name).strip("-.")[:96]
