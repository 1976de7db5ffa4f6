"""`teachcache report RUN_DIR`: one self-contained HTML page about a training run.

It gathers what the run and its store already wrote: the best epoch's metrics (t2v and
v2t, validation and test), the training curves, the teachers' report card, the ablation
table and chart of the config's ``[ablate]`` (when it was run) and the store's summary.
Plots are drawn with matplotlib and embedded; the page needs no other file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from teachcache.cache.store import Store, StoreError
from teachcache.pipeline.html import escape, figure_png, image, page, table
from teachcache.pipeline.runs import load_run, open_run_store

METRICS = ("R1", "R5", "R10", "R50", "MdR", "MnR", "GeoMean")
REPORT_FILE = "report.html"


def _metrics_section(metrics: dict) -> str:
    selected = metrics.get("selected_on", "val")
    rows = [
        (split if split != "val" or selected == "val" else "val (= test)", direction, *(metrics[split][direction][k] for k in METRICS))
        for split in ("val", "test")
        for direction in ("t2v", "v2t")
    ]
    notes = [f"best epoch {metrics['best_epoch']}, selected by {escape(selected)} t2v R@1"]
    if selected == "test":
        notes.append("the epoch was selected on the test split: its numbers are optimistic")
    notes.append("v2t with several captions per video takes each video's best caption (optimistic at R@5/R@10)")
    if metrics.get("denoise"):
        d = metrics["denoise"]
        notes.append(f"denoised: top_k {d['top_k']} dropped {d['captions_dropped']} captions and {d['videos_dropped']} videos")
    notes.extend(f"warning: {escape(w)}" for w in metrics.get("warnings", []))
    teachers = ", ".join(metrics.get("teachers") or []) or "none"
    timing = f"{metrics['epoch_seconds']:.1f} s/epoch, teachers rebuilt in {metrics.get('teacher_ms_per_step', 0.0):.1f} ms/step ({escape(teachers)})"
    return "<h2>Retrieval</h2>" + table(("split", "direction", *METRICS), rows) + "".join(f"<p class='note'>{n}</p>" for n in [*notes, timing])


def _curves_section(history: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return ""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    for part in history[0]["loss"]:
        left.plot(epochs, [h["loss"][part] for h in history], label=part)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    left.legend()
    right.plot(epochs, [h["val"]["t2v"]["R1"] for h in history], marker="o", color="#2f6fa7")
    right.set_xlabel("epoch")
    right.set_ylabel("val t2v R@1 (%)")
    fig.tight_layout()
    return "<h2>Training</h2>" + image(figure_png(fig), "training loss and validation R@1 per epoch")


def _teachers_section(run_dir: Path, store: Store | None) -> str:
    card_path = run_dir / "teachers.json"
    if card_path.is_file():
        card = json.loads(card_path.read_text())
    elif store is None:
        return ""
    else:
        from teachcache.pipeline.report import teacher_card

        card = teacher_card(store, None)
    if not card["rows"]:
        return ""
    rows = [(r["name"], r["kind"], r["fit"], *(r[f"{s}_{k}"] if r[f"{s}_{k}"] is not None else "-" for s in ("val", "test") for k in ("R1", "R5", "R10"))) for r in card["rows"]]
    warnings = "".join(f"<p class='warn'>{escape(w['message'])}</p>" for w in card["warnings"])
    header = ("teacher", "kind", "weights", *(f"{s} {k}" for s in ("val", "test") for k in ("R1", "R5", "R10")))
    return "<h2>Teachers (t2v)</h2>" + table(header, rows) + warnings


def _ablation_section(folder: Path) -> str:
    table_path, chart = folder / "ablation.csv", folder / "ablation.png"
    if not table_path.is_file():
        return ""
    with open(table_path) as f:
        rows = list(csv.DictReader(f))
    shown = [
        (
            r["variant"],
            r["seeds"],
            f"{float(r['val_t2v_R1']):.1f} ± {float(r['val_t2v_R1_std']):.1f}",
            f"{float(r['test_t2v_R1']):.1f} ± {float(r['test_t2v_R1_std']):.1f}",
            float(r["test_t2v_R5"]),
            float(r["test_t2v_R10"]),
        )
        for r in rows
    ]
    picture = image(chart.read_bytes(), "ablation chart: t2v R@1 per variant") if chart.is_file() else ""
    return f"<h2>Ablation ({escape(folder)})</h2>" + table(("variant", "seeds", "val t2v R@1", "test t2v R@1", "test R@5", "test R@10"), shown) + picture


def _store_section(store: Store) -> str:
    info = store.info()
    rows = [(a["name"], "x".join(map(str, a["shape"])), a["dtype"], f"{a['stored_bytes'] / 2**20:.2f} MiB") for a in info["arrays"]]
    summary = (
        f"<p>{escape(info['path'])} ({escape(info['backend'])}): {info['videos']} videos, {info['captions']} captions, "
        f"{info['stored_bytes'] / 2**20:.1f} MiB ({info['bytes_per_video'] / 1024:.1f} KiB per video), "
        f"{len(info['failures'])} failed videos; fingerprint {escape(info['fingerprint'])}</p>"
    )
    return "<h2>Store</h2>" + summary + table(("array", "shape", "dtype", "stored"), rows)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's HTML report (default ``RUN_DIR/report.html``) and return its path."""
    run_dir = Path(run_dir)
    config, metrics = load_run(run_dir)
    try:
        store: Store | None = open_run_store(config, metrics)
        missing_store = ""
    except StoreError as exc:  # the run still has its metrics and curves: report them, say why the store part is missing
        store, missing_store = None, f"<p class='warn'>{escape(exc).replace(chr(10), '<br>')}</p>"
    sections = [
        f"<p class='note'>run {escape(run_dir)}: {escape(config.train.objective.kind)} student, {config.train.epochs} epochs, batch {config.train.batch_size}</p>",
        missing_store,
        _metrics_section(metrics),
        _curves_section(metrics.get("history", [])),
        _teachers_section(run_dir, store),
        _ablation_section(Path(config.ablate.out)),
        _store_section(store) if store is not None else "",
    ]
    if store is not None:
        store.close()
    path = Path(out) if out else run_dir / REPORT_FILE
    path.write_text(page(f"teachcache report: {run_dir.name}", sections))
    return path
