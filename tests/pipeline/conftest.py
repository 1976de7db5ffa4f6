"""Pipeline fixtures: a tiny config (tiny data, dual teacher, one-epoch training) with its store extracted."""

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
def cli_config(tiny_data, tmp_path):
    path = tmp_path / "ablate.toml"
    path.write_text(CONFIG.format(data=tiny_data, store=tmp_path / "store", out=tmp_path / "ablation"))
    runner = CliRunner()
    assert runner.invoke(main, ["extract", "--quiet", "--config", str(path)]).exit_code == 0
    return path


