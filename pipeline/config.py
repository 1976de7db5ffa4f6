"""The project config: typed dataclasses loaded from TOML, with ``key=value`` overrides.

A config file has one table per part: ``[synth]`` (the generated data set),
``[prepare]`` (a benchmark's annotations -> manifests), ``[extract]`` (stage one), ``[train]`` (stage
two) and ``[ablate]`` (variants of stage two). Unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from pipeline.ablate import AblateConfig
from pipeline.prepare import PrepareConfig
from pipeline.synth import SynthConfig
from stages.extract.config import ExtractConfig
from stages.student.config import TrainConfig
from stages.options import opt


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key."""


@dataclass
class Config:
    synth: SynthConfig = opt(SynthConfig(), "the generated demo data set (teachcache synth)")
    prepare: PrepareConfig = opt(PrepareConfig(), "a benchmark's annotation files -> the manifests in extract.data (teachcache prepare)")
    extract: ExtractConfig = opt(ExtractConfig(), "stage one: decoding, encoders, teachers, store")
    train: TrainConfig = opt(TrainConfig(), "stage two: the student, its objective and its training")
    ablate: AblateConfig = opt(AblateConfig(), "student variants trained over one cache (teachcache ablate)")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(tp, value, where)
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build a config dataclass from a dict, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [{where or 'top level'}]; known keys: {known}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def parse_value(raw: str) -> Any:
    """A TOML literal (``12``, ``true``, ``"x"``, ``["a"]``), else the raw string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_path(tree: Any, path: list[str], value: Any, full: str) -> None:
    key, rest = path[0], path[1:]
    if isinstance(tree, list):
        if not key.isdigit() or int(key) >= len(tree):
            raise ConfigError(f"override {full!r}: {key!r} is not an index of a list of {len(tree)}")
        index: Any = int(key)
    elif isinstance(tree, dict):
        if key not in tree:
            raise ConfigError(f"override {full!r}: no key {key!r}; known keys: {sorted(tree)}")
        index = key
    else:
        raise ConfigError(f"override {full!r}: {key!r} goes below a plain value")
    if rest:
        _set_path(tree[index], rest, value, full)
    else:
        tree[index] = value


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``a.b.c=value`` overrides (list items by index: ``extract.text_encoders.1.model=x``)."""
    tree = asdict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. extract.sampling.num_frames=16")
        key, raw = item.split("=", 1)
        _set_path(tree, key.strip().replace("[", ".").replace("]", "").split("."), parse_value(raw.strip()), item)
    return from_dict(Config, tree)


EXTENDS_KEY = "extends"  # top-level key: a config file this one builds on (path relative to this file)


def merge_tables(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: tables merge key by key; plain values and lists (arrays of tables too) replace."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merge_tables(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_file(path: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML config file as a dict, with the file it ``extends`` (if any) merged underneath."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; the shipped ones are in configs/")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `extends` goes round in a circle ({' -> '.join(str(p) for p in seen)})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    base = data.pop(EXTENDS_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: `extends` must be a file name, got {base!r}")
    return merge_tables(read_config_file(path.parent / base, (*seen, path.resolve())), data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a TOML config (defaults where absent; ``extends = "base.toml"`` builds on another file) and apply overrides."""
    data = read_config_file(path) if path is not None else {}
    return apply_overrides(from_dict(Config, data), overrides or [])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _emit_table(obj: Any, prefix: str, lines: list[str], header: str) -> None:
    plain, tables, arrays = [], [], []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            tables.append((f, value))
        elif isinstance(value, list) and value and is_dataclass(value[0]):
            arrays.append((f, value))
        else:
            plain.append((f, value))
    if plain and header:
        lines.append(header)
    for f, value in plain:
        lines.append(f"{f.name} = {_toml_value(value)}  # {f.metadata.get('help', '')}".rstrip(" #"))
    for f, value in tables:
        name = f"{prefix}.{f.name}" if prefix else f.name
        lines.append("")
        _emit_table(value, name, lines, f"[{name}]")
    for f, items in arrays:
        name = f"{prefix}.{f.name}" if prefix else f.name
        for item in items:
            lines.append("")
            _emit_table(item, name, lines, f"[[{name}]]")


def dump_config(config: Any) -> str:
    """The resolved config as TOML, each key followed by its one-line meaning."""
    lines: list[str] = []
    _emit_table(config, "", lines, "")
    return "\n".join(lines).strip() + "\n"

