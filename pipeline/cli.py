"""The ``teachcache`` command line: wires configs to the stages. Only this module parses flags."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from teachcache.cache.errors import TeachcacheError
from teachcache.pipeline.config import SHIPPED, dump_config, load_config

DEFAULT_CONFIG = "demo"  # a shipped config's name (pipeline/configs/demo.toml) or a path


class UserError(click.ClickException):
    """An error caused by input or config: printed without a traceback."""

    exit_code = 2


def user_errors(fn):
    """Turn the project's own errors (input, config, files) into one clear line and exit code 2;
    anything else is a bug and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TeachcacheError as exc:
            raise UserError(str(exc)) from exc

    return wrapper


def config_options(fn):
    """--config and --set, shared by every command that reads the config."""
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config field, e.g. extract.sampling.num_frames=16")(fn)
    fn = click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, help="a TOML config file, or a shipped config's name (demo, msrvtt, ...)")(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """teachcache: distil heavy text-video retrieval teachers from cached teacher outputs."""


@main.command()
@config_options
@user_errors
def config(config_path: str, overrides: tuple[str, ...]) -> None:
    """Print the resolved config, every field with its meaning."""
    click.echo(dump_config(load_config(config_path, list(overrides))), nl=False)


@main.command()
@config_options
@click.option("--out", type=click.Path(file_okay=False), default=None, help="data root to write (default: extract.data)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@user_errors
def synth(config_path: str, overrides: tuple[str, ...], out: str | None, quiet: bool) -> None:
    """Generate the embedded default data set (MP4 videos, captions, manifests)."""
    from teachcache.pipeline.synth import generate

    cfg = load_config(config_path, list(overrides))
    manifest = generate(out or cfg.extract.data, cfg.synth, progress=not quiet)
    if quiet:
        click.echo(f"synth: {manifest.videos.num_rows} videos, {manifest.captions.num_rows} captions -> {manifest.root}")


def _dataset_config(dataset: str | None) -> str:
    """The shipped config named after the data set when there is one, else the default config."""
    return dataset if dataset and (SHIPPED / f"{dataset}.toml").is_file() else DEFAULT_CONFIG


@main.command()
@click.option("--dataset", default=None, help="msrvtt | msvd | didemo | activitynet | vatex | custom (default: prepare.dataset)")
@click.option("--root", type=click.Path(file_okay=False), default=None, help="folder of the official annotation files")
@click.option("--videos", type=click.Path(file_okay=False), default=None, help="folder of the videos, searched recursively (default: --root)")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="where the manifests go (default: extract.data)")
@click.option("--variant", default=None, help="msrvtt: 9k | 7k | full; vatex: folder of the split lists")
@click.option("--file", "custom_file", default=None, help="custom: the CSV or JSONL file under --root")
@click.option("--split", "custom_split", default=None, help="custom: the split (train, val, test) of rows that give none, e.g. a CSV without a split column")
@click.option("--splits", default=None, help="comma-separated splits to prepare, e.g. test")
@click.option("--val-videos", type=int, default=None, help="hold out this many training videos as the val split")
@click.option("--config", "config_path", default=None, help="a TOML config file or a shipped config's name (default: the data set's own, else demo)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config field, e.g. prepare.paragraphs=joined")
@user_errors
def prepare(dataset, root, videos, out, variant, custom_file, custom_split, splits, val_videos, config_path, overrides) -> None:
    """Read a benchmark's official annotations and write the manifests stage one reads;
    videos that are not found are counted and listed (missing.txt), not fatal."""
    from teachcache.pipeline.prepare import prepare as run_prepare

    flags = {"dataset": dataset, "root": root, "videos": videos, "variant": variant, "file": custom_file, "split": custom_split, "val_videos": val_videos}
    extra = [f"prepare.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    if splits is not None:
        extra.append(f"prepare.splits={json.dumps([s.strip() for s in splits.split(',') if s.strip()])}")
    cfg = load_config(config_path or _dataset_config(dataset), [*overrides, *extra])
    _, report = run_prepare(cfg.prepare, out or cfg.extract.data)
    click.echo(report.line())


@main.command()
@config_options
@click.option("--force", is_flag=True, help="rebuild the store from scratch instead of resuming")
@click.option("--strict", is_flag=True, help="exit non-zero when any video failed")
@click.option("--quiet", is_flag=True, help="no progress bars")
@user_errors
def extract(config_path: str, overrides: tuple[str, ...], force: bool, strict: bool, quiet: bool) -> None:
    """Stage one: decode, encode and score teachers once; write the store."""
    from teachcache.stages.extract.run import ExtractionFailures, run_extraction

    cfg = load_config(config_path, list(overrides))
    try:
        summary = run_extraction(cfg.extract, force=force, strict=strict, progress=not quiet)
    except ExtractionFailures as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(3)
    click.echo(summary.line())


@main.command("import-features")
@config_options
@click.option("--force", is_flag=True, help="rebuild the store from scratch instead of resuming")
@click.option("--quiet", is_flag=True, help="no progress bar")
@user_errors
def import_features(config_path: str, overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Stage one for released features: CE's expert, text and caption pickles and TeachText's
    teacher files ([features]) into a store."""
    from teachcache.stages.extract.importer import run_import

    cfg = load_config(config_path, list(overrides))
    click.echo(run_import(cfg.features, force=force, progress=not quiet).line())


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@main.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the info as JSON")
@user_errors
def info(store: str, as_json: bool) -> None:
    """Describe a store: arrays, sizes, fingerprint, completeness, failures."""
    from teachcache.cache.store import Store

    with Store.open(store, require_complete=False) as opened:
        data = opened.info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"store        {data['path']} ({data['backend']}, schema {data['schema_version']})")
    click.echo(f"fingerprint  {data['fingerprint']}")
    click.echo(f"complete     {'yes' if data['complete'] else 'NO (' + str(len(data['missing_work'])) + ' unit shards missing)'}")
    click.echo(f"rows         {data['videos']} videos, {data['captions']} captions")
    click.echo(
        f"size         arrays {_format_bytes(data['stored_bytes'])} ({_format_bytes(data['bytes_per_video'])} per video); "
        f"the whole folder {_format_bytes(data['folder_bytes'])} (with the teacher heads, manifests and kept runs)"
    )
    click.echo(f"{'array':<28} {'shape':<20} {'dtype':<8} stored")
    for a in data["arrays"]:
        click.echo(f"{a['name']:<28} {tuple(a['shape'])!s:<20} {a['dtype']:<8} {_format_bytes(a['stored_bytes'])}")
    for name, size in data["files"].items():
        click.echo(f"{'files/' + name:<58} {_format_bytes(size)}")
    click.echo(f"failures     {len(data['failures'])}")
    for f in data["failures"][:20]:
        click.echo(f"  {f['video_id']}  [{f['stage']}]  {f['reason']}")
    if len(data["failures"]) > 20:
        click.echo(f"  ... {len(data['failures']) - 20} more (use --json)")


@main.command()
@config_options
@click.option("--quiet", is_flag=True, help="no progress bars or per-epoch lines")
@click.option("--resume", is_flag=True, help="continue a killed run from its last finished epoch (the same settings)")
@click.option("--force", is_flag=True, help="train again from scratch in a folder that already holds a run")
@user_errors
def train(config_path: str, overrides: tuple[str, ...], quiet: bool, resume: bool, force: bool) -> None:
    """Stage two: train the student from the store only (no video, no encoder). Every value is
    checked first; a refused run changes nothing on disk, and a run folder is written only once
    training starts."""
    from teachcache.pipeline.report import baseline_config, card_markdown, ensure_baseline, restrict_card, teacher_card, write_card
    from teachcache.pipeline.stores import open_student_store
    from teachcache.stages.common.distributed import RankInfo
    from teachcache.stages.student.recipe import train_student
    from teachcache.stages.student.validate import check_against_store, check_run_dir, check_train_config

    cfg = load_config(config_path, list(overrides))
    main_rank = RankInfo.from_env().is_main  # under torchrun every rank trains; rank 0 reports
    check_train_config(cfg.train)
    with open_student_store(cfg) as store:
        check_against_store(cfg.train, store)
        check_run_dir(cfg.train, resume, force)
        run_dir = Path(cfg.train.run_dir)
        card = None
        if cfg.train.objective.kind != "infonce":  # warn before any distillation
            check_against_store(baseline_config(cfg.train, store), store)
            card = restrict_card(teacher_card(store, ensure_baseline(cfg.train, store, progress=not quiet and main_rank)), cfg.train.objective.teachers)
            for warning in card["warnings"] if main_rank else []:
                click.echo(f"warning: {warning['message']}", err=True)
        result = train_student(cfg.train, store, progress=not quiet, resume=resume, force=force, record=dump_config(cfg))
    if not main_rank:
        return
    for warning in result.get("warnings", []) if quiet else []:
        click.echo(f"warning: {warning}", err=True)
    if card is not None:
        write_card(card, run_dir)
        with open(run_dir / "metrics.md", "a") as f:
            f.write("\n" + card_markdown(card))
    t2v, val = result["test"]["t2v"], result["val"]["t2v"]
    click.echo(
        f"train: {cfg.train.objective.kind} student, best epoch {result['best_epoch']}: val t2v R1 {val['R1']:.1f}, "
        f"test t2v R1 {t2v['R1']:.1f} R5 {t2v['R5']:.1f} R10 {t2v['R10']:.1f} MdR {t2v['MdR']:.0f}; "
        f"{result['epoch_seconds']:.1f} s/epoch -> {run_dir / 'metrics.json'}"
    )


@main.command()
@click.argument("store", required=False, type=click.Path(file_okay=False))
@config_options
@click.option("--no-baseline", is_flag=True, help="list the teachers only (no InfoNCE student is trained)")
@click.option("--json", "as_json", is_flag=True, help="print the card as JSON")
@click.option("--quiet", is_flag=True, help="no progress lines")
@user_errors
def teachers(store: str | None, config_path: str, overrides: tuple[str, ...], no_baseline: bool, as_json: bool, quiet: bool) -> None:
    """The teacher report card of a store (default: the store [train] reads): each teacher's own
    val/test t2v R1/R5/R10 next to the student without teachers ([train] of the config) from the
    same cache."""
    from teachcache.cache.store import Store
    from teachcache.pipeline.report import card_markdown, ensure_baseline, teacher_card, write_card
    from teachcache.pipeline.stores import student_store_path

    cfg = load_config(config_path, list(overrides))
    with Store.open(store or student_store_path(cfg)) as opened:
        baseline = None if no_baseline else ensure_baseline(cfg.train, opened, progress=not quiet and not as_json)
        card = teacher_card(opened, baseline)
        path = write_card(card, opened.scratch("report"))
    if as_json:
        click.echo(json.dumps(card, indent=2))
        return
    click.echo(card_markdown(card), nl=False)
    click.echo(f"teachers: {len(card['rows']) - (baseline is not None)} teachers, {len(card['warnings'])} warnings -> {path}")


@main.command()
@config_options
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="an official CLIP4Clip or TeachCLIP checkpoint (e.g. TeachCLIP's released student)")
@click.option("--split", default="test", show_default=True, help="the store split to score")
@click.option("--json", "as_json", is_flag=True, help="print the metrics as JSON")
@user_errors
def evaluate(config_path: str, overrides: tuple[str, ...], checkpoint: str, split: str, as_json: bool) -> None:
    """Score an official student checkpoint on the config's store (train.frames and train.text,
    extracted by that checkpoint's own CLIP) with teachcache's metrics."""
    from teachcache.pipeline.official import evaluate_official
    from teachcache.pipeline.stores import open_training_store
    from teachcache.stages.common.device import resolve_device

    cfg = load_config(config_path, list(overrides))
    with open_training_store(cfg.extract) as store:
        result = evaluate_official(store, checkpoint, cfg.train.frames, cfg.train.text, split, resolve_device(cfg.train.device))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for direction in ("t2v", "v2t"):
        m = result[direction]
        click.echo(f"{direction}: R@1 {m['R1']:.1f}  R@5 {m['R5']:.1f}  R@10 {m['R10']:.1f}  MdR {m['MdR']:.1f}  MnR {m['MnR']:.1f}")
    click.echo(f"evaluate: {result['model']} checkpoint ({', '.join(result['loaded'])}) on {result['videos']} {split} videos, {result['captions']} captions <- {checkpoint}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="where the page goes (default: RUN_DIR/report.html)")
@user_errors
def report(run_dir: str, out: str | None) -> None:
    """Write a self-contained HTML report of a training run: metrics, curves, teachers, ablation, store."""
    from teachcache.pipeline.report_html import write_report

    click.echo(f"report: {write_report(run_dir, out)}")


@main.command()
@click.argument("queries", nargs=-1, required=True)
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="folder of a finished `teachcache train` run")
@click.option("-k", "top_k", default=5, show_default=True, type=click.IntRange(1), help="videos shown per query")
@click.option("--split", default=None, help="search one split only (train, val, test)")
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False), help="also write a page with the hits' keyframes")
@click.option(
    "--index", "index_dir", default=None, type=click.Path(file_okay=False), help="search the videos `teachcache encode` indexed in this folder (default: the run's own store)"
)
@user_errors
def search(queries: tuple[str, ...], run_dir: str, top_k: int, split: str | None, html_path: str | None, index_dir: str | None) -> None:
    """Find videos for text queries with a trained student (one vector per video, one dot product per video)."""
    from teachcache.pipeline.search import SearchIndex, search_page

    if index_dir is not None and split is not None:
        raise UserError("--split selects among the run's own store; an --index has no splits")
    index = SearchIndex(run_dir, index=index_dir)
    try:
        results = []
        for query in queries:
            hits, seconds = index.search(query, top_k, split)
            results.append((query, hits))
            click.echo(f"“{query}”: top {len(hits)} of {index.searched(split)} in {1000 * seconds:.1f} ms")
            for hit in hits:
                click.echo(f"  {hit.rank:>2}. {hit.score:7.3f}  {hit.video_id}  [{hit.split}]  {hit.caption}")
        if html_path:
            Path(html_path).write_text(search_page(index, results))
            click.echo(f"search: page -> {html_path}")
    finally:
        index.close()


@main.command()
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="folder of a finished `teachcache train` run")
@click.option("--videos", required=True, type=click.Path(file_okay=False), help="a folder of video files (searched recursively), or a data root with videos.parquet")
@click.option("--captions", default=None, type=click.Path(dir_okay=False), help="a CSV or JSONL of (video, caption) rows to embed too (with a folder of videos)")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="where the vectors, their ids and the store of the new videos go")
@click.option("--quiet", is_flag=True, help="no progress bars")
@user_errors
def encode(run_dir: str, videos: str, captions: str | None, out: str, quiet: bool) -> None:
    """Embed new videos (and captions) with a trained student: stage one with the student's encoders
    only, then one vector per video and per caption, in .npy files with Parquet ids."""
    from teachcache.pipeline.encode import encode as run_encode

    click.echo(run_encode(run_dir, videos, out, captions, progress=not quiet).line())


@main.command()
@config_options
@click.option("--quiet", is_flag=True, help="no per-run lines")
@click.option("--only", multiple=True, metavar="NAME", help="train only these variants (repeatable)")
@click.option("--force", is_flag=True, help="train again variants whose runs exist with other settings")
@user_errors
def ablate(config_path: str, overrides: tuple[str, ...], quiet: bool, only: tuple[str, ...], force: bool) -> None:
    """Train the [ablate] variants over one store (a variant already trained with the same
    settings is read back); write a table (md, csv) and a chart (png)."""
    from teachcache.pipeline.ablate import run_ablation

    rows, out = run_ablation(config_path, list(overrides), progress=not quiet, only=list(only), force=force)
    click.echo((out / "ablation.md").read_text(), nl=False)
    click.echo(f"ablate: {len(rows)} variants -> {out / 'ablation.md'}, {out / 'ablation.csv'}, {out / 'ablation.png'}")


if __name__ == "__main__":
    main()
