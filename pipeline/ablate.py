"""Ablations over one cache: train several student variants from the same store.

Each variant is a list of ``key=value`` overrides on the config; stage one is never
touched (the store's fingerprint is checked once). Writes a comparison table (Markdown
and CSV) and a bar chart (PNG) of validation and test text-to-video R@1, mean and
standard deviation over the seeds.
"""

from __future__ import annotations

import csv
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from stages.options import opt


@dataclass
class VariantConfig:
    name: str = opt("infonce", "the variant's name (a folder and a row of the table)")
    overrides: list[str] = opt([], "key=value overrides applied to the config for this variant")


DEFAULT_VARIANTS = [
    VariantConfig("infonce", ["train.objective.kind=infonce"]),
    VariantConfig("teachclip", ["train.objective.kind=teachclip"]),
    VariantConfig("teachtext", ["train.objective.kind=teachtext"]),
]


@dataclass
class AblateConfig:
    out: str = opt("runs/demo/ablation", "folder of the variants' runs, the table and the chart")
    seeds: list[int] = opt([0], "training seeds; each variant is trained once per seed")
    overrides: list[str] = opt([], "key=value overrides applied to every variant (e.g. train.epochs=8)")
    variants: list[VariantConfig] = opt(DEFAULT_VARIANTS, "the variants to compare")


COLUMNS = ("variant", "seeds", "val_t2v_R1", "val_t2v_R1_std", "test_t2v_R1", "test_t2v_R1_std", "test_t2v_R5", "test_t2v_R10", "test_t2v_MdR", "test_v2t_R1", "epoch_seconds", "teacher_ms_per_step", "captions_dropped")


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
    md = ["| variant | seeds | val t2v R@1 | test t2v R@1 | test R@5 | test R@10 | test MdR | test v2t R@1 | s/epoch | teacher ms/step | captions dropped |", "|---|---|---|---|---|---|---|---|---|---|---|"]
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


def run_ablation(config_path: str | None, overrides: list[str], progress: bool = True, only: list[str] | None = None) -> tuple[list[dict], Path]:
    """Train every variant (or those named in ``only``) for every seed from the configured store;
    write table and chart."""
    from pipeline.config import dump_config, load_config
    from stages.extract.run import open_extracted_store
    from stages.student.train import train_student

    base = load_config(config_path, overrides)
    spec = base.ablate
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with open_extracted_store(base.extract) as store:
        unknown = sorted(set(only or []) - {v.name for v in spec.variants})
        if unknown:
            raise ValueError(f"--only names {unknown}, not among the [ablate] variants {[v.name for v in spec.variants]}")
        for variant in [v for v in spec.variants if not only or v.name in only]:
            results = []
            for seed in spec.seeds:
                cfg = load_config(config_path, [*overrides, *spec.overrides, *variant.overrides, f"train.seed={seed}", f"train.run_dir={out / variant.name / f'seed{seed}'}"])
                if cfg.extract != base.extract:
                    raise ValueError(f"variant {variant.name!r} changes [extract]; an ablation trains over one cache, so only [train] may vary")
                Path(cfg.train.run_dir).mkdir(parents=True, exist_ok=True)
                (Path(cfg.train.run_dir) / "config.toml").write_text(dump_config(cfg))
                t0 = time.perf_counter()
                results.append(train_student(cfg.train, store, progress=False))
                if progress:
                    r = results[-1]
                    print(f"ablate: {variant.name} seed {seed}: val t2v R1 {r['val']['t2v']['R1']:.1f}, test t2v R1 {r['test']['t2v']['R1']:.1f} ({time.perf_counter() - t0:.0f} s)")
            rows.append(summarize_runs(variant.name, results))
    write_table(rows, out)
    write_chart(rows, out)
    return rows, out
