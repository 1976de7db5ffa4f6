"""Ablations over one cache: train several student variants from the same store.

Each variant is a partial config table (``[ablate.variants.<name>]``) merged over the
config, after ``[ablate.shared]``; only [train] may vary, so stage one is never touched (the
store is checked against the config once, and every variant before any training). Writes a comparison table (Markdown
and CSV) and a bar chart (PNG) of validation and test text-to-video R@1, mean and
standard deviation over the seeds.
"""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from teachcache.cache.errors import ConfigError
from teachcache.pipeline.config import Config, dump_config, from_dict, load_config, merge_tables

COLUMNS = (
    "variant",
    "seeds",
    "val_t2v_R1",
    "val_t2v_R1_std",
    "test_t2v_R1",
    "test_t2v_R1_std",
    "test_t2v_R5",
    "test_t2v_R10",
    "test_t2v_MdR",
    "test_v2t_R1",
    "epoch_seconds",
    "teacher_ms_per_step",
    "captions_dropped",
)


def summarize_runs(name: str, results: list[dict]) -> dict:
    """Mean (and std over seeds) of the metrics a table row shows."""

    def values(split: str, direction: str, key: str) -> list[float]:
        return [r[split][direction][key] for r in results]

    def std(xs: list[float]) -> float:
        return statistics.stdev(xs) if len(xs) > 1 else 0.0

    return {
        "variant": name,
        "seeds": len(results),
        "val_t2v_R1": statistics.mean(values("val", "t2v", "R1")),
        "val_t2v_R1_std": std(values("val", "t2v", "R1")),
        "test_t2v_R1": statistics.mean(values("test", "t2v", "R1")),
        "test_t2v_R1_std": std(values("test", "t2v", "R1")),
        "test_t2v_R5": statistics.mean(values("test", "t2v", "R5")),
        "test_t2v_R10": statistics.mean(values("test", "t2v", "R10")),
        "test_t2v_MdR": statistics.mean(values("test", "t2v", "MdR")),
        "test_v2t_R1": statistics.mean(values("test", "v2t", "R1")),
        "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in results),
        "teacher_ms_per_step": statistics.mean(r.get("teacher_ms_per_step", 0.0) for r in results),
        "captions_dropped": statistics.mean((r.get("denoise") or {}).get("captions_dropped", 0) for r in results),
    }


def write_table(rows: list[dict], out: Path) -> tuple[Path, Path]:
    """ablation.md and ablation.csv under ``out``."""
    md = [
        "| variant | seeds | val t2v R@1 | test t2v R@1 | test R@5 | test R@10 | test MdR | test v2t R@1 | s/epoch | teacher ms/step | captions dropped |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['variant']} | {r['seeds']} | {r['val_t2v_R1']:.1f} ± {r['val_t2v_R1_std']:.1f} | "
            f"{r['test_t2v_R1']:.1f} ± {r['test_t2v_R1_std']:.1f} | {r['test_t2v_R5']:.1f} | {r['test_t2v_R10']:.1f} | "
            f"{r['test_t2v_MdR']:.1f} | {r['test_v2t_R1']:.1f} | {r['epoch_seconds']:.1f} | {r['teacher_ms_per_step']:.1f} | {r['captions_dropped']:.0f} |"
        )
    md_path, csv_path = out / "ablation.md", out / "ablation.csv"
    md_path.write_text("\n".join(md) + "\n\nMean ± standard deviation over seeds; best epoch by validation t2v R@1.\n")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return md_path, csv_path


def write_chart(rows: list[dict], out: Path) -> Path:
    """ablation.png: validation and test t2v R@1 per variant, with seed std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.8))
    for offset, split, color in ((-0.2, "val", "#8fb8de"), (0.2, "test", "#2f6fa7")):
        ax.bar(x + offset, [r[f"{split}_t2v_R1"] for r in rows], 0.4, yerr=[r[f"{split}_t2v_R1_std"] for r in rows], label=f"{split} t2v R@1", color=color, capsize=3)
    ax.set_xticks(x, [r["variant"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("R@1 (%)")
    ax.set_title("students trained from one cache")
    ax.legend()
    fig.tight_layout()
    path = out / "ablation.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def variant_config(base: Config, name: str, seed: int) -> Config:
    """The config of one variant and seed: ``[ablate.shared]`` then the variant's partial table
    over the base; its run folder under ``[ablate].out``. Only [train] may differ from the base."""
    spec = base.ablate
    tree = merge_tables(merge_tables(asdict(base), spec.shared), spec.variants[name])
    tree["train"] = {**tree["train"], "seed": seed, "run_dir": str(Path(spec.out) / name / f"seed{seed}")}
    try:
        cfg: Config = from_dict(Config, tree)
    except ConfigError as exc:
        raise ConfigError(f"[ablate.variants.{name}]: {exc}") from exc
    if cfg.extract != base.extract:
        raise ConfigError(f"[ablate.variants.{name}] changes [extract]; an ablation trains over one cache, so only [train] may vary")
    return cfg


def run_ablation(config: str | None, overrides: list[str], progress: bool = True, only: list[str] | None = None, force: bool = False) -> tuple[list[dict], Path]:
    """Train every variant (or those named in ``only``) for every seed from the configured store;
    write table and chart. Every variant is checked before any training. A variant's run that
    exists with the same settings is resumed (a finished one is read back: it costs an
    evaluation); with other settings it is refused unless ``force``."""
    from teachcache.pipeline.stores import open_student_store
    from teachcache.stages.student.recipe import train_student
    from teachcache.stages.student.validate import check_against_store, check_run_dir, check_train_config

    base = load_config(config, overrides)
    spec = base.ablate
    unknown = sorted(set(only or []) - set(spec.variants))
    if unknown:
        raise ConfigError(f"--only names {unknown}, not among the [ablate] variants {list(spec.variants)}")
    names = [n for n in spec.variants if not only or n in only]
    configs = {name: [variant_config(base, name, seed) for seed in spec.seeds] for name in names}  # all checked before any training
    out = Path(spec.out)
    rows = []
    with open_student_store(base) as store:
        for cfg in (c for name in names for c in configs[name]):
            check_train_config(cfg.train)
            check_against_store(cfg.train, store)
            check_run_dir(cfg.train, resume=True, force=force)
        for name in names:
            results = []
            for cfg in configs[name]:
                t0 = time.perf_counter()
                results.append(train_student(cfg.train, store, progress=False, resume=True, force=force, record=dump_config(cfg)))
                if progress:
                    r = results[-1]
                    print(
                        f"ablate: {name} seed {cfg.train.seed}: val t2v R1 {r['val']['t2v']['R1']:.1f}, test t2v R1 {r['test']['t2v']['R1']:.1f} ({time.perf_counter() - t0:.0f} s)"
                    )
            rows.append(summarize_runs(name, results))
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, out)
    write_chart(rows, out)
    return rows, out
