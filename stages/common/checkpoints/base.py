"""What every checkpoint format shares: the file reader (tensors only), the key check that
lists missing and unexpected names, and the result, ``OfficialCheckpoint``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from teachcache.cache.errors import InputMissing, TeachcacheError
from teachcache.stages.common.checkpoints import CHECKPOINT_FORMATS
from teachcache.stages.common.layers import CrossTransformer

SHOWN_NAMES = 30  # names listed in a refusal, per list


class CheckpointError(TeachcacheError, ValueError):
    """An official checkpoint cannot be read or does not fit its format; ``missing`` and
    ``unexpected`` hold every offending name."""

    def __init__(self, message: str, missing: Iterable[str] = (), unexpected: Iterable[str] = ()):
        super().__init__(message)
        self.missing, self.unexpected = sorted(missing), sorted(unexpected)


@dataclass
class OfficialCheckpoint:
    """An official checkpoint, read and checked.

    ``backbone``: the CLIP's tensors under their official names with ``clip.`` stripped (as
    stored: float16 where the official code converted them). ``head``: every other tensor the
    model uses, under its official name. ``hparams``: what the shapes tell (widths, layers,
    heads, patch, grid, image size, context length, vocabulary, ...; ``None`` where the file
    cannot tell) and ``logit_scale`` (the exponent of the stored log). ``ignored``: names in the
    file that the model does not use (allowed by the format, or dropped on request)."""

    format: str
    model: str
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    hparams: dict[str, Any]
    path: str
    ignored: list[str] = field(default_factory=list)

    @property
    def logit_scale(self) -> float:
        return float(self.hparams["logit_scale"])

    def cross_transformer(self, wrap_positions: bool = False) -> CrossTransformer | None:
        """The seqTransf cross module with the head's weights (float32, eval), or None (meanP, xpool)."""
        if "frame_position_embeddings.weight" not in self.head:
            return None
        h = self.hparams
        cross = CrossTransformer(h["cross_width"], h["cross_layers"], h["cross_heads"], h["cross_rows"], wrap_positions)
        state = {k: v for k, v in self.head.items() if k.startswith(("frame_position_embeddings.", "transformerClip."))}
        load_module(cross, state, f"{self.path}: the seqTransf head")
        return cross.eval()


class CheckpointFormat:
    """One family of official files: which keys it claims, its models, the names each model
    needs (and may carry unused), how its tensors split into backbone and head, and the
    hyper-parameters its shapes tell."""

    name: ClassVar[str] = ""
    models: ClassVar[tuple[str, ...]] = ()
    prefix: ClassVar[str] = "clip."

    def claims(self, keys: set[str]) -> bool:
        raise NotImplementedError

    def detect_model(self, keys: set[str]) -> str:
        raise NotImplementedError

    def expected(self, keys: set[str], model: str) -> set[str]:
        """The names a file of this model must hold (layer counts read off the keys)."""
        raise NotImplementedError

    def allowed(self, key: str, model: str) -> bool:
        """Whether an unused name is accepted (a documented allowance); it lands in ``ignored``."""
        return False

    def check_allowed(self, state: Mapping[str, torch.Tensor], key: str) -> None:
        """Refuse an allowed name whose value is wrong (e.g. position ids that are not 0..n-1)."""

    def head_key(self, key: str) -> bool:
        return not key.startswith(self.prefix)

    def backbone_name(self, key: str, model: str) -> str:
        return key[len(self.prefix) :]

    def hparams(self, backbone: Mapping[str, torch.Tensor], head: Mapping[str, torch.Tensor], model: str) -> dict[str, Any]:
        raise NotImplementedError


def layer_count(keys: Iterable[str], prefix: str) -> int:
    """1 + the largest layer index ``i`` of the names ``prefix{i}.*`` (0 if none)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = [int(m.group(1)) for k in keys if (m := pattern.match(k))]
    return max(found) + 1 if found else 0


def layer_keys(prefix: str, layers: int, names: Iterable[str]) -> set[str]:
    """``prefix{i}.{name}`` for every layer (at least one, so a missing family is named)."""
    return {f"{prefix}{i}.{name}" for i in range(max(layers, 1)) for name in names}


def names_line(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" ... and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


class InertObject:
    """Stands in for a pickled training-run object (a config, an argparse Namespace): the
    unpickler creates it without ``__init__`` and hands it the pickled attributes, which it
    keeps as plain data in ``state``. No code of the class it replaces runs."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class InertConfigParser(InertObject):
    """CE's ``parse_config.ConfigParser``; ``state["_config"]`` is the resolved config."""


class InertNamespace(InertObject):
    """``argparse.Namespace``."""


class InertPath(str):
    """A pickled ``pathlib`` path, as the string of its parts joined by '/'."""

    def __new__(cls, *parts: str) -> InertPath:
        return super().__new__(cls, "/".join(str(p) for p in parts))


PATH_CLASSES = ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path")
# The training-run objects official trainers pickle next to the weights (CE / TeachText's
# BaseTrainer saves its ConfigParser, which holds paths and the command line's Namespace),
# registered for weights_only loading under the names the files use, as inert placeholders.
RUN_OBJECTS: list[tuple[type, str]] = [
    (InertConfigParser, "parse_config.ConfigParser"),
    (InertNamespace, "argparse.Namespace"),
    *[(InertPath, f"{module}.{name}") for module in ("pathlib", "pathlib._local") for name in PATH_CLASSES],
]
EXPORT_HINT = 'export its state dict where the official code runs: torch.save(torch.load(p, map_location="cpu")["state_dict"], "state_dict.pth")'


def load_file(path: str) -> Any:
    """What a checkpoint file holds: safetensors, or ``torch.load(weights_only=True)`` with the
    training-run objects (``RUN_OBJECTS``) read as inert placeholders. Any other pickled object
    is refused (never run) with a one-line hint."""
    if not Path(path).is_file():
        raise InputMissing(f"checkpoint {path} not found")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file as load_safetensors

        return load_safetensors(path)
    try:
        with torch.serialization.safe_globals(list(RUN_OBJECTS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error names the refused global
        raise CheckpointError(
            f"checkpoint {path} cannot be read with torch.load(weights_only=True) (it needs pickled objects, or is not a torch file): {load_failure(exc)}; {EXPORT_HINT}"
        ) from exc


def state_of(loaded: Any, path: str) -> dict[str, torch.Tensor]:
    """The state dict in what ``load_file`` returned (a state dict, or a dict with a
    ``state_dict`` entry: X-Pool, CE). A DDP ``module.`` prefix is removed."""
    state = loaded
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def load_state(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a file (``load_file``, then ``state_of``)."""
    return state_of(load_file(path), path)


def load_failure(exc: Exception) -> str:
    """The line of torch.load's refusal that says what was refused (a global, an opcode)."""
    text = str(exc)
    _, marker, detail = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (detail if marker else text).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line]  # a blocked module's refusal has no marker
    return (named or lines or [type(exc).__name__])[0]


def resolve_format(state: Mapping[str, torch.Tensor], path: str, format: str) -> CheckpointFormat:
    """The named format, or the one that claims the keys."""
    if format != "auto":
        CHECKPOINT_FORMATS.check(format, f"checkpoint {path}")
        named: CheckpointFormat = CHECKPOINT_FORMATS.get(format)()
        return named
    keys = set(state)
    for name in CHECKPOINT_FORMATS:
        candidate: CheckpointFormat = CHECKPOINT_FORMATS.get(name)()
        if candidate.claims(keys):
            return candidate
    tops = sorted({".".join(k.split(".")[:2]) for k in keys})
    raise CheckpointError(f"checkpoint {path}: no known format ({CHECKPOINT_FORMATS.choices()}) fits its keys, which start with {names_line(tops)}")


def check_keys(fmt: CheckpointFormat, state: Mapping[str, torch.Tensor], model: str, path: str, drop_head: bool) -> list[str]:
    """Refuse missing and unexpected names; return the accepted unused ones (sorted)."""
    keys = set(state)
    expected = fmt.expected(keys, model)
    missing = sorted(expected - keys)
    extra = keys - expected
    ignored = {k for k in extra if fmt.allowed(k, model) or (drop_head and fmt.head_key(k))}
    unexpected = sorted(extra - ignored)
    if missing or unexpected:
        head_only = model == "meanP" and unexpected and all(fmt.head_key(k) for k in unexpected)
        hint = " (to read only the backbone of a file with a head, as the official meanP loader does, pass drop_head=True)" if head_only else ""
        raise CheckpointError(
            f"checkpoint {path} does not fit format {fmt.name!r}, model {model!r}: missing {len(missing)} [{names_line(missing)}], unexpected {len(unexpected)} [{names_line(unexpected)}]{hint}",
            missing,
            unexpected,
        )
    for key in ignored:
        fmt.check_allowed(state, key)
    return sorted(ignored)


def read(path: str | Path, format: str = "auto", model: str = "auto", drop_head: bool = False, state: Mapping[str, torch.Tensor] | None = None) -> OfficialCheckpoint:
    """See ``read_checkpoint`` in this package; ``state``: the file's tensors, when already loaded."""
    path = str(path)
    state = load_state(path) if state is None else dict(state)
    fmt = resolve_format(state, path, format)
    if model == "auto":
        model = fmt.detect_model(set(state))
    elif model not in fmt.models:
        raise CheckpointError(f"checkpoint {path}: format {fmt.name!r} has no model {model!r}; choose one of {list(fmt.models)}")
    if drop_head and model != "meanP":
        raise CheckpointError(f"checkpoint {path}: drop_head is for reading a file as model 'meanP', not {model!r}")
    ignored = check_keys(fmt, state, model, path, drop_head)
    used = {k: v for k, v in state.items() if k not in set(ignored)}
    backbone = {fmt.backbone_name(k, model): v for k, v in used.items() if not fmt.head_key(k)}
    head = {k: v for k, v in used.items() if fmt.head_key(k)}
    return OfficialCheckpoint(fmt.name, model, backbone, head, fmt.hparams(backbone, head, model), path, ignored)


def load_module(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)``, its refusal (a missing name, a wrong shape) as a CheckpointError."""
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{what} does not fit: {' '.join(str(exc).split())}") from exc
