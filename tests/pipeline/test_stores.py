"""Stage two checks its store against its config from store.json alone: no manifests, no
open_clip, no decoder needed; every differing field listed."""

import shutil
import subprocess
import sys

from conftest import CLI_CONFIG

BLOCKED = ("open_clip", "decord", "av", "sentence_transformers", "onnxruntime")
RUN_WITHOUT = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # importing it now fails, as if it were not installed
from teachcache.pipeline.cli import main
main(sys.argv[1:])
"""


def test_training_needs_neither_the_source_data_nor_open_clip_nor_decoders(cli_config, tmp_path, tiny_data):
    moved = tmp_path / "moved-data"
    text = cli_config.read_text()
    shutil.copytree(tiny_data, moved)
    config = tmp_path / "moved.toml"
    config.write_text(text.replace(str(tiny_data), str(moved)))
    shutil.rmtree(moved)  # the manifests' folder is gone: the store alone must serve
    args = ["train", "--quiet", "--config", str(config), "--set", f"train.run_dir={tmp_path / 'run'}", "--set", "train.objective.kind=infonce"]
    out = subprocess.run([sys.executable, "-c", RUN_WITHOUT.format(blocked=BLOCKED), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "train: infonce student" in out.stdout and (tmp_path / "run" / "metrics.json").exists()


def test_a_changed_config_is_refused_listing_every_differing_field(cli_config, tmp_path):
    args = ["train", "--quiet", "--config", str(cli_config), "--set", f"train.run_dir={tmp_path / 'run'}"]
    changes = ["extract.sampling.num_frames=6", "extract.teachers.dual.scale=20.0", "extract.text_encoders.clip.max_words=8", "extract.keyframe_size=0"]
    out = subprocess.run([sys.executable, "-m", "teachcache.pipeline.cli", *args, *[x for c in changes for x in ("--set", c)]], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    for line in ("keyframe_size: 96 vs 0", "sampling.num_frames: 12 vs 6", "teachers.dual.scale: 100.0 vs 20.0", "text_encoders.clip.max_words: 0 vs 8"):
        assert line in out.stderr, out.stderr
    assert out.stderr.count(" vs ") == 1 + len(changes)  # the header's "store vs config" and one line per field
    assert CLI_CONFIG  # the fixture's config is the one the store was built with
