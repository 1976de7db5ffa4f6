import csv

import pytest
from click.testing import CliRunner

from pipeline.cli import main

CONFIG = """
[extract]
data = "{data}"
store = "{store}"
[extract.decode]
workers = 0
[extract.layout]
shard_size = 4
chunk_rows = 2
[[extract.text_encoders]]
name = "clip"
[[extract.teachers]]
name = "dual"
[train]
epochs = 1
batch_size = 4
[train.student]
heads = 4
[ablate]
out = "{out}"
seeds = [0, 1]
[[ablate.variants]]
name = "infonce"
overrides = ["train.objective.kind=infonce"]
[[ablate.variants]]
name = "teachclip"
overrides = ["train.objective.kind=teachclip"]
"""


@pytest.fixture
def config(tiny_data, tmp_path):
    path = tmp_path / "ablate.toml"
    path.write_text(CONFIG.format(data=tiny_data, store=tmp_path / "store", out=tmp_path / "ablation"))
    runner = CliRunner()
    assert runner.invoke(main, ["extract", "--quiet", "--config", str(path)]).exit_code == 0
    return path


def test_ablation_trains_every_variant_and_seed_and_writes_table_csv_chart(config, tmp_path):
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(config)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "ablation"
    for variant in ("infonce", "teachclip"):
        for seed in (0, 1):
            assert (out / variant / f"seed{seed}" / "metrics.json").exists()
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["variant"] for r in rows] == ["infonce", "teachclip"] and all(r["seeds"] == "2" for r in rows)
    assert "| teachclip | 2 |" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_variant_that_changes_the_cache_is_refused(config):
    text = config.read_text().replace('overrides = ["train.objective.kind=infonce"]', 'overrides = ["extract.sampling.num_frames=6"]')
    config.write_text(text)
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(config)])
    assert result.exit_code == 2 and "only [train] may vary" in result.output
