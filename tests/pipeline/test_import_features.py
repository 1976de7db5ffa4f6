"""``teachcache import-features`` on CE's formats (the golden tiny MSR-VTT folder)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from golden_ce import ROOT

from teachcache.pipeline.cli import main
from teachcache.pipeline.config import load_config

TINY = """[features]
[features.splits]
train = "train_list_full.txt"
val = "val_list_full.txt"
[features.experts.audio]
file = "aggregated_audio_feats/Audio_MSRVTT_new.pickle"
max_tokens = 5
[features.experts.face]
file = "aggregated_face_feats/facefeats-avg.pickle"
[features.text.gpt2-xl-finetune]
file = "aggregated_text_feats/gpt2-xl-finetune.pkl"
max_tokens = 6
[features.teachers.w2v]
file = "teachers/train-full-ce-refined-text-w2v.pkl"
"""


def test_the_shipped_ce_config_names_every_part_of_the_release():
    cfg = load_config("ce-msrvtt").features
    assert set(cfg.teachers) == {"w2v", "gpt2-xl", "gpt2-xl-finetuned"}
    assert cfg.experts["audio"].max_tokens == 29 and cfg.text["gpt2-xl-finetune"].max_tokens == 37


def test_import_features_imports_the_golden_folder_and_a_refusal_writes_nothing(tmp_path):
    if not ROOT.is_dir():
        pytest.skip(f"{ROOT} is absent")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)

    def run(*overrides: str):
        args = ["import-features", "--quiet", "--config", str(config)]
        return CliRunner().invoke(main, [*args, *(a for o in overrides for a in ("--set", o))])

    result = run(f"features.root={ROOT}", f"features.store={tmp_path / 'store'}")
    assert result.exit_code == 0, result.output
    assert "7 videos, 19 captions" in result.output and "audio 3, face 3" in result.output
    refused = run("features.root=/nowhere", f"features.store={tmp_path / 'other'}")
    assert refused.exit_code == 2 and "features.root" in refused.output
    assert not (tmp_path / "other").exists()
