"""``ce``: Collaborative Experts' CE+ (TeachText's student; albanie/collaborative-experts).

Files: ``trained_model.pth`` as the official ``BaseTrainer`` saves it (``{arch, epoch,
state_dict, monitor_best, config, optimizer}``, whose ``config`` is a pickled
``parse_config.ConfigParser`` holding ``pathlib`` paths and an ``argparse.Namespace``: read as
inert placeholders, see ``base.RUN_OBJECTS``), or the bare state dict. Names: ``pooling.<expert>``
(the variable-length experts' NetVLADs), ``text_pooling`` and ``ce.*`` with modules indexed in the
sorted expert order (``teachcache.stages.common.ce``). There is no backbone: every tensor is in
``head``. ``hparams``: the sizes the shapes tell, per expert index (a state dict does not name
its experts); ``read_ce`` adds the names (given, or from the file's config) and returns a
``CEArchitecture``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from teachcache.stages.common.ce import CEArchitecture, CENet
from teachcache.stages.common.checkpoints.base import (
    CheckpointError,
    CheckpointFormat,
    InertConfigParser,
    OfficialCheckpoint,
    layer_count,
    layer_keys,
    load_file,
    load_module,
    read,
    state_of,
)

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
LINEAR = ("weight", "bias")
VLAD = ("clusters", "clusters2", *(f"batch_norm.{leaf}" for leaf in BN))
REASON = tuple(f"{i}.{leaf}" for i, leaves in ((0, BN), (2, LINEAR), (3, BN), (5, LINEAR)) for leaf in leaves)
VIDEO_GU = tuple(f"cg.{m}.{leaf}" for m, leaves in (("fc", LINEAR), ("batch_norm", BN), ("batch_norm2", BN)) for leaf in leaves)
TEXT_GU = tuple(f"{m}.{leaf}" for m, leaves in (("fc", LINEAR), ("cg.fc", LINEAR), ("cg.batch_norm", BN)) for leaf in leaves)
EXPERTS = "ce.video_dim_reduce."
# the arch.args of TeachText's CE+ that the shapes cannot tell, as CENet implements them
VARIANT = {"use_ce": "pairwise", "include_self": 1, "num_g_layers": 3, "num_h_layers": 0, "use_mish": 1, "use_bn_reason": 1, "keep_missing_modalities": False, "l2renorm": False}


class CEFormat(CheckpointFormat):
    name = "ce"
    models: ClassVar[tuple[str, ...]] = ("ce",)
    prefix = ""

    def claims(self, keys: set[str]) -> bool:
        return "ce.moe_fc.weight" in keys

    def detect_model(self, keys: set[str]) -> str:
        return "ce"

    def expected(self, keys: set[str], model: str) -> set[str]:
        experts = layer_count(keys, EXPERTS)
        pooled = {k.split(".")[1] for k in keys if k.startswith("pooling.")}
        names = {f"pooling.{m}.{n}" for m in pooled for n in VLAD} | {f"text_pooling.{n}" for n in VLAD}
        names |= {f"ce.moe_fc.{leaf}" for leaf in LINEAR} | {f"ce.g_reason_1.{leaf}" for leaf in LINEAR} | {f"ce.g_reason_shared.{n}" for n in REASON}
        names |= layer_keys(EXPERTS, experts, ("fc.weight", "fc.bias"))
        return names | layer_keys("ce.video_GU.", experts, VIDEO_GU) | layer_keys("ce.text_GU.", experts, TEXT_GU)

    def head_key(self, key: str) -> bool:
        return True

    def hparams(self, backbone: Mapping[str, torch.Tensor], head: Mapping[str, torch.Tensor], model: str) -> dict[str, Any]:
        vlad = {k.split(".")[1]: [int(head[k].shape[1]), int(head[k].shape[2])] for k in head if k.startswith("pooling.") and k.endswith(".clusters2")}
        text, total = head["text_pooling.clusters"].shape
        clusters = int(head["text_pooling.clusters2"].shape[2])
        return {
            "experts": layer_count(head, EXPERTS),
            "input_widths": [int(head[f"{EXPERTS}{i}.fc.weight"].shape[1]) for i in range(layer_count(head, EXPERTS))],
            "vlad": vlad,  # name -> [token width, clusters]
            "text_dim": int(text),
            "text_clusters": clusters,
            "text_ghosts": int(total) - clusters,
            "shared_dim": int(head["ce.g_reason_1.weight"].shape[0]),
        }


@dataclass
class CECheckpoint:
    """A CE checkpoint, read and checked: the official tensors, the architecture, and the
    file's resolved config (``trained_model.pth``; None for a bare state dict)."""

    checkpoint: OfficialCheckpoint
    arch: CEArchitecture
    config: dict[str, Any] | None

    def model(self) -> CENet:
        """A ``CENet`` with the file's weights (eval mode)."""
        net = CENet(self.arch)
        load_module(net, self.checkpoint.head, f"{self.checkpoint.path}: the CE network")
        return net.eval()


def read_ce(path: str | Path, experts: Sequence[str] | None = None) -> CECheckpoint:
    """Read a CE checkpoint (``trained_model.pth`` or a bare state dict) without running any
    pickled object. ``experts``: the expert names; by default those of the file's config
    (``experts.modalities`` less ``experts.drop_feats``), which a bare state dict lacks."""
    path = str(path)
    loaded = load_file(path)
    config = config_of(loaded)
    ckpt = read(path, format="ce", state=state_of(loaded, path))
    check_variant(config, path)
    if experts is None:
        experts = config_experts(config, path)
    try:
        arch = CEArchitecture.from_state_dict(ckpt.head, experts)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    return CECheckpoint(ckpt, arch, config)


def config_of(loaded: Any) -> dict[str, Any] | None:
    """The resolved config (``ConfigParser._config``) a ``trained_model.pth`` carries, as plain data."""
    parser = loaded.get("config") if isinstance(loaded, Mapping) else None
    state = parser.state if isinstance(parser, InertConfigParser) else None
    config = state.get("_config") if isinstance(state, Mapping) else None
    return dict(config) if isinstance(config, Mapping) else None


def config_experts(config: Mapping[str, Any] | None, path: str) -> list[str]:
    """The experts a CE config trains (``compute_dims``: sorted modalities less ``drop_feats``)."""
    section = (config or {}).get("experts")
    if not isinstance(section, Mapping) or not isinstance(section.get("modalities"), list):
        raise CheckpointError(f"checkpoint {path}: a state dict does not name its experts; pass them (experts=[...], the config's experts.modalities)")
    dropped = set(str(section.get("drop_feats") or "").split(",")) - {""}
    return sorted(m for m in section["modalities"] if m not in dropped)


def check_variant(config: Mapping[str, Any] | None, path: str) -> None:
    """Refuse a file whose config asks for a CE variant other than TeachText's CE+ (a bare state
    dict carries no config: its shapes are checked, Mish and the BatchNorms are assumed)."""
    args = ((config or {}).get("arch") or {}).get("args") or {}
    differ = {k: args[k] for k, v in VARIANT.items() if k in args and args[k] != v}
    if differ:
        raise CheckpointError(f"checkpoint {path}: its config asks for {differ}; teachcache's CENet implements {VARIANT} (TeachText's CE+) only")
