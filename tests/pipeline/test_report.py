"""The teacher report card through the CLI: `teachcache teachers` and the run report of `teachcache train`."""

import json

from click.testing import CliRunner

from teachcache.pipeline.cli import main


def test_teachers_command_lists_each_teacher_next_to_the_infonce_student(cli_config, tmp_path):
    result = CliRunner().invoke(main, ["teachers", "--config", str(cli_config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "| dual | dual | no weights |" in result.output and "| InfoNCE student | baseline |" in result.output
    card = json.loads((tmp_path / "store" / "report" / "teachers.json").read_text())
    baseline = next(r for r in card["rows"] if r["kind"] == "baseline")
    dual = next(r for r in card["rows"] if r["name"] == "dual")
    # the warning appears exactly when the teacher is weaker than the student on validation
    assert bool(card["warnings"]) == (dual["val_R1"] < baseline["val_R1"])
    # the baseline is trained once per store and config, then read back
    again = CliRunner().invoke(main, ["teachers", "--config", str(cli_config)])
    assert "training the InfoNCE-only student" not in again.output


def test_distilling_run_reports_its_teachers(cli_config, tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--quiet", "--config", str(cli_config), "--set", f"train.run_dir={run_dir}", "--set", "train.objective.kind=teachclip"])
    assert result.exit_code == 0, result.output
    card = json.loads((run_dir / "teachers.json").read_text())
    assert [r["name"] for r in card["rows"]] == ["dual", "InfoNCE student"]
    assert "Teacher report card" in (run_dir / "metrics.md").read_text()
    assert all(f"warning: {w['message']}" in result.output for w in card["warnings"])


def test_unknown_teacher_in_the_objective_is_a_clear_error(cli_config, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--quiet",
            "--config",
            str(cli_config),
            "--set",
            f"train.run_dir={tmp_path / 'r'}",
            "--set",
            "train.objective.kind=teachtext",
            "--set",
            'train.objective.teachers=["xpool"]',
        ],
    )
    assert result.exit_code == 2 and "objective.teachers names ['xpool']" in result.output
