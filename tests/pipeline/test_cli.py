"""The command line: starts without torch, turns the project's own errors into one line with
exit 2, and lets a bug show its traceback."""

import subprocess
import sys

from click.testing import CliRunner

from teachcache.pipeline.cli import main


def test_importing_the_cli_loads_no_torch():
    code = "import sys, teachcache.pipeline.cli; print(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_project_error_is_one_line_with_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["info", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "Error: no teachcache store at" in result.output
    bad_kind = CliRunner().invoke(main, ["config", "--set", "train.objective.kind=distil"])
    assert bad_kind.exit_code == 2 and "train.objective.kind: unknown objective 'distil'; choose one of ['infonce', 'teachclip', 'teachtext', 'mckd']" in bad_kind.output


def test_a_bug_keeps_its_traceback(monkeypatch):
    import teachcache.pipeline.cli as cli

    def broken(*args, **kwargs):
        raise ValueError("a bug, not the user's doing")

    monkeypatch.setattr(cli, "dump_config", broken)
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)  # not turned into a one-line user error
    out = subprocess.run(
        [sys.executable, "-c", "import teachcache.pipeline.cli as c; c.dump_config = lambda *a: 1 / 0; c.main(['config'])"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1 and "Traceback (most recent call last)" in out.stderr and "ZeroDivisionError" in out.stderr
