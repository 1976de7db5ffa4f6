"""What a store's content depends on, hashed into its fingerprint: the config part
(``extract.config.config_components``, torch-free) and the inputs part computed here, what
the config's names resolve to (the manifests' content, weight hashes, architectures,
package versions). Cheap: identities come from tags, seeds or file hashes, no model is loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from teachcache.cache.fingerprint import canonical_json
from teachcache.cache.manifest import Manifest
from teachcache.cache.store import SCHEMA_VERSION
from teachcache.stages.extract.config import ExtractConfig, TextEncoderConfig, config_components
from teachcache.stages.extract.encoders import FRAME_ENCODERS, TEXT_ENCODERS
from teachcache.stages.extract.encoders.base import ModelSpec, hash_path, package_version

PACKAGES = ("torch", "open_clip_torch", "decord", "av", "pillow", "numpy")  # plus each text kind's own
TEACHER_FILES = ("checkpoint", "scores")  # teacher fields that name files whose content enters the fingerprint


def text_spec(t: TextEncoderConfig) -> ModelSpec:
    return ModelSpec(t.model, t.pretrained, t.seed, t.tokenizer, t.output, t.max_words, t.heads)


def manifest_digest(manifest: Manifest) -> str:
    """Hash of the manifests' content: a store belongs to one data set."""
    h = hashlib.sha256()
    for table in (manifest.videos, manifest.captions):
        h.update(canonical_json(table.to_pydict()).encode())
    return h.hexdigest()[:16]


def _file_hashes(teacher: Any) -> dict[str, str]:
    found = {}
    for field_name in TEACHER_FILES:
        path = getattr(teacher, field_name)
        if path:
            found[field_name] = hash_path(Path(path)) if Path(path).exists() else "missing"
    return found


def input_components(cfg: ExtractConfig, manifest: Manifest) -> dict[str, Any]:
    """What the config's names resolve to on this machine."""
    kinds = [TEXT_ENCODERS.get(t.kind) for t in cfg.text_encoders.values()]
    return {
        "schema_version": SCHEMA_VERSION,
        "manifest": manifest_digest(manifest),
        "frame_encoders": {name: FRAME_ENCODERS.get(f.kind).identity(f) for name, f in cfg.frame_encoders.items()},
        "text_encoders": {name: kind.weights_identity(text_spec(t)) for (name, t), kind in zip(cfg.text_encoders.items(), kinds)},
        "teacher_files": {name: hashes for name, t in cfg.teachers.items() if (hashes := _file_hashes(t))},
        "packages": {p: package_version(p) for p in sorted(set(PACKAGES).union(*(kind.packages for kind in kinds)))},
    }


def store_components(cfg: ExtractConfig, manifest: Manifest) -> dict[str, Any]:
    """The components a store built from this config and these manifests carries."""
    return {"config": config_components(cfg), "inputs": input_components(cfg, manifest)}
