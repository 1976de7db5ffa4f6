"""The project config: typed dataclasses loaded from TOML, with ``key=value`` overrides.

A config file has one table per part: ``[synth]`` (the generated data set), ``[prepare]`` (a
benchmark's annotations -> manifests), ``[extract]`` (stage one), ``[features]`` (stage one for
released features), ``[train]`` (stage two) and ``[ablate]`` (variants of stage two). Encoders and teachers are tables keyed by name
(``[extract.teachers.xpool]``, ``--set extract.teachers.xpool.fit_lr=3e-4``); ablation
variants are partial config tables. ``extends = "base.toml"`` builds on another file, tables
merging key by key. A config is named by a path or by the name of a shipped one (``demo``:
``pipeline/configs/demo.toml``). Unknown keys, wrong types and unknown kinds are errors that
name the key.
"""

from __future__ import annotations

import tomllib
import typing
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from teachcache.cache.errors import ConfigError, InputMissing
from teachcache.cache.registry import Registry
from teachcache.pipeline.prepare import PrepareConfig
from teachcache.pipeline.synth import SynthConfig
from teachcache.stages.common.options import opt
from teachcache.stages.extract.config import ExtractConfig, FeaturesConfig
from teachcache.stages.student.config import TrainConfig

SHIPPED = Path(__file__).parent / "configs"  # the configs that ship with the package
EXTENDS_KEY = "extends"  # top-level key: a config file this one builds on (relative to this file, or a shipped name)


@dataclass
class AblateConfig:
    out: str = opt("runs/demo/ablation", "folder of the variants' runs, the table and the chart")
    seeds: list[int] = opt([0], "training seeds; each variant is trained once per seed")
    shared: dict[str, Any] = opt({}, "a partial config merged into every variant (e.g. {train = {epochs = 8}})")
    variants: dict[str, dict[str, Any]] = opt(
        {"infonce": {"train": {"objective": {"kind": "infonce"}}}, "teachclip": {"train": {"objective": {"kind": "teachclip"}}}},
        "the variants by name, each a partial config over this one (only [train] may vary)",
    )


@dataclass
class Config:
    synth: SynthConfig = opt(SynthConfig(), "the generated demo data set (teachcache synth)")
    prepare: PrepareConfig = opt(PrepareConfig(), "a benchmark's annotation files -> the manifests in extract.data (teachcache prepare)")
    extract: ExtractConfig = opt(ExtractConfig(), "stage one: decoding, encoders, teachers, store")
    features: FeaturesConfig = opt(FeaturesConfig(), "stage one for released features (teachcache import-features): CE's experts, text features, TeachText's teacher files")
    train: TrainConfig = opt(TrainConfig(), "stage two: the student, its objective and its training")
    ablate: AblateConfig = opt(AblateConfig(), "student variants trained over one cache (teachcache ablate)")


# ----- building dataclasses from plain data ---------------------------------------------------
def _named_table_item(tp: Any) -> Any:
    """The item dataclass of a ``dict[str, SomeConfig]`` field (a table keyed by name), else None."""
    if typing.get_origin(tp) is dict:
        _, item = typing.get_args(tp)
        return item if is_dataclass(item) else None
    return None


def _coerce(tp: Any, value: Any, where: str, choices: Registry[Any] | None = None) -> Any:
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    item = _named_table_item(tp)
    if item is not None:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table of named entries ([{where}.<name>]), got {value!r}")
        return {str(name): _named_entry(item, str(name), entry, f"{where}.{name}") for name, entry in value.items()}
    if typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return value
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        if choices is not None:
            choices.check(value, where)
        return value
    return value


def _named_entry(item: type, name: str, entry: Any, where: str) -> Any:
    """One entry of a named table; its ``name`` is its key."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table, got {entry!r}")
    if entry.get("name", name) != name:
        raise ConfigError(f"{where}: name {entry['name']!r} differs from its table key {name!r}; drop the name line")
    return from_dict(item, {**entry, "name": name}, where)


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build a config dataclass from a dict, refusing unknown keys, wrong types and unknown kinds."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [{where or 'top level'}]; known keys: {sorted(known)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k, known[k].metadata.get("choices")) for k, v in data.items()}
    return cls(**kwargs)


# ----- overrides ---------------------------------------------------------------------------
def parse_value(raw: str) -> Any:
    """A TOML literal (``12``, ``true``, ``"x"``, ``["a"]``, ``{a = 1}``), else the raw string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_path(tree: Any, tp: Any, path: list[str], value: Any, full: str) -> None:
    """Set ``path`` in the plain-data ``tree`` of type ``tp``: fields of a dataclass, entries
    of a table (a named table gains an entry when a new name is set), items of a list by index."""
    key, rest = path[0], path[1:]
    if is_dataclass(tp):
        names = {f.name for f in fields(tp)}
        if key not in names:
            raise ConfigError(f"override {full!r}: no key {key!r}; known keys: {sorted(names)}")
        child_tp: Any = typing.get_type_hints(tp)[key]
    elif isinstance(tree, dict):
        item = _named_table_item(tp)
        if key not in tree:
            if not rest and item is None:
                tree[key] = value
                return
            tree[key] = {"name": key} if item is not None else {}
        child_tp = item if item is not None else (typing.get_args(tp)[1] if typing.get_origin(tp) is dict else Any)
        if child_tp is Any and isinstance(tree[key], dict):
            child_tp = dict[str, Any]
    elif isinstance(tree, list):
        if not key.isdigit() or int(key) >= len(tree):
            raise ConfigError(f"override {full!r}: {key!r} is not an index of a list of {len(tree)}")
        _assign(tree, int(key), rest, value, full, typing.get_args(tp)[0] if typing.get_args(tp) else Any)
        return
    else:
        raise ConfigError(f"override {full!r}: {key!r} goes below a plain value")
    _assign(tree, key, rest, value, full, child_tp)


def _assign(tree: Any, key: Any, rest: list[str], value: Any, full: str, child_tp: Any) -> None:
    if rest:
        if not isinstance(tree[key], (dict, list)):
            raise ConfigError(f"override {full!r}: {key!r} is a plain value, nothing lies below it")
        _set_path(tree[key], child_tp, rest, value, full)
    else:
        tree[key] = value


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``a.b.c=value`` overrides (``extract.teachers.xpool.fit_lr=3e-4``, ``train.objective.teachers=["a"]``)."""
    tree = asdict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. extract.sampling.num_frames=16")
        key, raw = item.split("=", 1)
        _set_path(tree, Config, key.strip().replace("[", ".").replace("]", "").split("."), parse_value(raw.strip()), item)
    return from_dict(Config, tree)


# ----- files ---------------------------------------------------------------------------------
def shipped_configs() -> list[str]:
    """Names of the configs that ship with the package (``teachcache extract --config NAME``)."""
    return sorted(p.stem for p in SHIPPED.glob("*.toml"))


def resolve_config(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A config file: a path (relative to ``relative_to`` when given, for ``extends``), else a shipped config's name."""
    path = Path(name_or_path)
    candidates = [relative_to / path] if relative_to is not None and not path.is_absolute() else []
    candidates.append(path)
    if path.suffix != ".toml" and len(path.parts) == 1:
        candidates.append(SHIPPED / f"{path}.toml")
    elif len(path.parts) == 1:
        candidates.append(SHIPPED / path.name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputMissing(f"config {str(name_or_path)!r} not found: give a TOML file's path or a shipped config's name ({', '.join(shipped_configs())})")


def merge_tables(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: tables merge key by key (named tables too); plain values and lists replace."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merge_tables(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_file(name_or_path: str | Path, seen: tuple[Path, ...] = (), relative_to: Path | None = None) -> dict[str, Any]:
    """A TOML config as a dict, with the file it ``extends`` (if any) merged underneath."""
    path = resolve_config(name_or_path, relative_to)
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
    return merge_tables(read_config_file(base, (*seen, path.resolve()), path.parent), data)


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a config (defaults where absent) by path or shipped name, and apply overrides."""
    data = read_config_file(name_or_path) if name_or_path is not None else {}
    return apply_overrides(from_dict(Config, data), overrides or [])


# ----- writing -------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _emit_table(obj: Any, prefix: str, lines: list[str], header: str) -> None:
    plain, tables = [], []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("key"):
            continue  # a named table's name is its key
        if is_dataclass(value) or (isinstance(value, dict) and value and all(is_dataclass(v) or isinstance(v, dict) for v in value.values())):
            tables.append((f, value))
        else:
            plain.append((f, value))
    if plain and header:
        lines.append(header)
    for f, value in plain:
        lines.append(f"{f.name} = {_toml_value(value)}  # {f.metadata.get('help', '')}".rstrip(" #"))
    for f, value in tables:
        name = f"{prefix}.{f.name}" if prefix else f.name
        if is_dataclass(value):
            lines.append("")
            _emit_table(value, name, lines, f"[{name}]")
            continue
        for key, item in value.items():
            lines.append("")
            if is_dataclass(item):
                _emit_table(item, f"{name}.{_toml_key(key)}", lines, f"[{name}.{_toml_key(key)}]")
            else:
                lines.append(f"[{name}.{_toml_key(key)}]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items())


def dump_config(config: Any) -> str:
    """The resolved config as TOML, each key followed by its one-line meaning."""
    lines: list[str] = []
    _emit_table(config, "", lines, "")
    return "\n".join(lines).strip() + "\n"
