"""A run folder's safety (issue 15, items 1 and 2): every value is checked before any work, a refused
command changes nothing on disk, a finished run is overwritten only with --force, and --resume
names the settings that differ."""

from pathlib import Path

from click.testing import CliRunner

from teachcache.pipeline.cli import main


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_train_leaves_a_finished_run_untouched(trained_run, cli_config, tmp_path):
    before, report = _snapshot(trained_run), _snapshot(tmp_path / "store" / "report")
    bad_head = CliRunner().invoke(main, ["train", "--quiet", "--config", str(cli_config), "--set", f"train.run_dir={trained_run}", "--set", "train.student.video_head=lstm"])
    assert bad_head.exit_code == 2 and "unknown video head 'lstm'" in bad_head.output
    resume = CliRunner().invoke(
        main, ["train", "--quiet", "--resume", "--config", str(cli_config), "--set", f"train.run_dir={trained_run}", "--set", "train.epochs=2", "--set", "train.lr=5e-4"]
    )
    assert resume.exit_code == 2 and "lr: 0.0001 vs 0.0005" in resume.output and "saved vs this config" in resume.output
    again = CliRunner().invoke(main, ["train", "--quiet", "--config", str(cli_config), "--set", f"train.run_dir={trained_run}", "--set", "train.epochs=2"])
    assert again.exit_code == 2 and "holds a finished run" in again.output and "--force" in again.output
    assert _snapshot(trained_run) == before  # config.toml, metrics, weights: byte for byte
    assert _snapshot(tmp_path / "store" / "report") == report


def test_force_trains_a_finished_run_again(trained_run, cli_config):
    forced = CliRunner().invoke(main, ["train", "--quiet", "--force", "--config", str(cli_config), "--set", f"train.run_dir={trained_run}", "--set", "train.epochs=1"])
    assert forced.exit_code == 0, forced.output
    assert "epochs = 1" in (trained_run / "config.toml").read_text() and not (trained_run / "checkpoints" / "epoch_002.json").exists()


def test_every_value_is_checked_before_the_baseline_or_any_folder(cli_config, tmp_path):
    report = tmp_path / "store" / "report"
    for bad, message in (
        ("train.student.heads=3", "does not divide the frame width"),
        ("train.objective.coarse=kl", "unknown coarse teaching method 'kl'"),
        ("train.loader=disk", "train.loader = 'disk'"),
        ("train.student.max_frames=4", "below the store's 12 frames"),
    ):
        result = CliRunner().invoke(main, ["train", "--quiet", "--config", str(cli_config), "--set", f"train.run_dir={tmp_path / 'new'}", "--set", bad])
        assert result.exit_code == 2 and message in result.output, (bad, result.output)
        assert not (tmp_path / "new").exists() and not report.exists()  # no run folder, no baseline trained first


def test_a_selection_split_too_small_to_mean_much_is_warned_about(trained_run):
    import json

    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert any("has 2 videos" in w and "says little" in w for w in metrics["warnings"])  # the tiny data's val split
    assert "warning: the val split that selects the epoch has 2 videos" in (trained_run / "metrics.md").read_text()


def test_after_the_store_is_rebuilt_search_lists_the_differing_fields_and_report_still_renders(trained_run, cli_config):
    rebuilt = CliRunner().invoke(main, ["extract", "--quiet", "--force", "--config", str(cli_config), "--set", "extract.sampling.num_frames=8"])
    assert rebuilt.exit_code == 0, rebuilt.output
    search = CliRunner().invoke(main, ["search", "--run", str(trained_run), "a red square"])
    assert search.exit_code == 2 and "config.sampling.num_frames: 12 vs 8" in search.output, search.output
    assert "{" not in search.output  # the differing leaves, not whole dictionaries
    report = CliRunner().invoke(main, ["report", str(trained_run)])
    assert report.exit_code == 0, report.output
    page = (trained_run / "report.html").read_text()
    assert "rebuilt since" in page and "config.sampling.num_frames: 12 vs 8" in page and "Retrieval" in page
