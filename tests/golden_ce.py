"""The golden oracle of issue 14 (``../shared/data/golden-ce``: outputs of the official
Collaborative Experts code on tiny weights, and a tiny MSR-VTT folder in CE's formats) and the
import config that reads that folder. Shared by the importer's and the ce student's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import GOLDEN_CE

from teachcache.stages.extract.config import ExpertFileConfig, FeaturesConfig, TeacherFileConfig, TextFileConfig

FORMATS = GOLDEN_CE / "formats"
ROOT = FORMATS / "structured-symlinks"
EXPERT_FILES = {  # name -> (file under ROOT, max_tokens): CE's sorted expert order
    "audio": ("aggregated_audio_feats/Audio_MSRVTT_new.pickle", 5),
    "face": ("aggregated_face_feats/facefeats-avg.pickle", 0),
    "imagenet.senet154.0": ("aggregated_imagenet_25fps_256px_stride1_offset0/senet154-avg.pickle", 0),
    "r2p1d.r2p1d-ig65m.0": ("aggregated_r2p1d_30fps_256px_stride32_offset0_inner_stride1/r2p1d-ig65m-avg.pickle", 0),
}
TEXT = "gpt2-xl-finetune"
TEACHERS = ("w2v", "gpt2-xl", "gpt2-xl-finetuned")  # the order of distil_params.teachers


def need_golden_ce() -> None:
    if not (GOLDEN_CE / "manifest.json").is_file():
        pytest.skip(f"the golden folder {GOLDEN_CE} is absent (set TEACHCACHE_SHARED to the folder holding data/golden-ce)")


def features_config(store: Path, root: Path = ROOT, teachers: tuple[str, ...] = TEACHERS) -> FeaturesConfig:
    """An import of the golden folder's four experts, its words (6 tokens, CE's cut) and teacher files."""
    return FeaturesConfig(
        root=str(root),
        store=str(store),
        experts={n: ExpertFileConfig(n, f, max_tokens=t) for n, (f, t) in EXPERT_FILES.items()},
        text={TEXT: TextFileConfig(TEXT, f"aggregated_text_feats/{TEXT}.pkl", max_tokens=6)},
        teachers={t: TeacherFileConfig(t, f"teachers/train-full-ce-refined-text-{t}.pkl") for t in teachers},
    )
