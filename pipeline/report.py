"""The teacher report card: every teacher's own validation and test retrieval next to the
InfoNCE-only student trained from the same cache, with a warning for each teacher weaker
than that student on validation (distilling from it is likely to hurt; docs/study.md
measured an order-blind X-Pool teacher costing an order-aware student 5 R@1).

None of the public TeachCLIP / TeachText code has it; it needs only the cache: teacher
metrics are measured in stage one, the baseline is one cheap student run (cached)."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from teachcache.cache.fingerprint import fingerprint
from teachcache.cache.store import Store
from teachcache.stages.student.config import TrainConfig, results_config
from teachcache.stages.student.recipe import train_student
from teachcache.stages.teachers.heads import head_record, stored_teachers

KEYS = ("R1", "R5", "R10")
BASELINE_DIR = "report"


def baseline_name(student_kind: str) -> str:
    """The student without teachers: InfoNCE, or for a ce student CE's own ranking loss alone."""
    return "ranking-only student" if student_kind == "ce" else "InfoNCE student"


def baseline_config(train: TrainConfig, store: Store) -> TrainConfig:
    """The student of this training config without teachers (InfoNCE; a ce student: TeachText's
    ranking loss alone, since its raw similarity has no temperature), in a folder keyed by
    store and config."""
    cfg = copy.deepcopy(train)
    if train.student.kind == "ce":
        cfg.objective.kind, cfg.objective.w_distill, cfg.objective.teachers = "teachtext", 0.0, []
    else:
        cfg.objective.kind = "infonce"
    cfg.denoise.top_k, cfg.run_dir = 0, ""
    key = fingerprint({"store": store.fingerprint, "train": results_config(asdict(cfg))})[:12]
    cfg.run_dir = str(store.scratch(BASELINE_DIR) / f"baseline-{key}")
    return cfg


def ensure_baseline(train: TrainConfig, store: Store, progress: bool = True) -> dict:
    """Metrics of the InfoNCE-only student over this store (trained once, then read back)."""
    cfg = baseline_config(train, store)
    metrics = Path(cfg.run_dir) / "metrics.json"
    if metrics.exists():
        return json.loads(metrics.read_text())
    if progress:
        print(f"report card: training the {baseline_name(train.student.kind)} baseline -> {cfg.run_dir}")
    return train_student(cfg, store, progress=False)


def _row(name: str, kind: str, metrics: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "kind": kind}
    for split in ("val", "test"):
        for k in KEYS:
            row[f"{split}_{k}"] = metrics[split]["t2v"][k] if split in metrics else None
    return row


def teacher_card(store: Store, baseline: dict | None) -> dict:
    """Rows (teachers, then the baseline student) and the warnings."""
    rows, warnings = [], []
    label = baseline_name(baseline.get("student_kind", "clip4clip") if baseline else "clip4clip")
    base_val = baseline["val"]["t2v"]["R1"] if baseline else None
    for name in stored_teachers(store):
        record = head_record(store, name)
        row = _row(name, record["kind"], record.get("metrics", {}))
        row["fit"] = (
            f"epoch {record['best_epoch']}" if record.get("fitted") else ("checkpoint" if record.get("checkpoint") else ("released file" if record.get("file") else "no weights"))
        )
        rows.append(row)
        if base_val is not None and row["val_R1"] is not None and row["val_R1"] < base_val:
            warnings.append(
                {
                    "teacher": name,
                    "message": f"teacher {name!r} ({record['kind']}) is weaker than the {label} on validation "
                    f"(t2v R1 {row['val_R1']:.1f} < {base_val:.1f}): distilling from it is likely to hurt",
                }
            )
    if baseline:
        rows.append({**_row(label, "baseline", baseline), "fit": f"epoch {baseline['best_epoch']}"})
    return {"store": str(store.path), "fingerprint": store.fingerprint, "rows": rows, "warnings": warnings}


def restrict_card(card: dict, teachers: list[str]) -> dict:
    """The card limited to the named teachers (and the baseline), e.g. those a run distils from."""
    rows = [r for r in card["rows"] if r["name"] in teachers or r["kind"] == "baseline"]
    return {**card, "rows": rows, "warnings": [w for w in card["warnings"] if w["teacher"] in teachers]}


def card_markdown(card: dict) -> str:
    """The card as a Markdown table plus its warnings."""
    cols = [f"{s} {k}" for s in ("val", "test") for k in KEYS]
    lines = ["| teacher | kind | weights | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for row in card["rows"]:
        values = [row[f"{s}_{k}"] for s in ("val", "test") for k in KEYS]
        lines.append(f"| {row['name']} | {row['kind']} | {row['fit']} | " + " | ".join("-" if v is None else f"{v:.1f}" for v in values) + " |")
    text = "## Teacher report card (text-to-video)\n\n" + "\n".join(lines) + "\n"
    if card["warnings"]:
        text += "\n" + "\n".join(f"- warning: {w['message']}" for w in card["warnings"]) + "\n"
    return text


def write_card(card: dict, folder: Path) -> Path:
    """teachers.md and teachers.json in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "teachers.json").write_text(json.dumps(card, indent=2))
    path = folder / "teachers.md"
    path.write_text(card_markdown(card))
    return path
