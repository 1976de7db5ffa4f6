import csv

from click.testing import CliRunner

from pipeline.cli import main

def test_ablation_trains_every_variant_and_seed_and_writes_table_csv_chart(cli_config, tmp_path):
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "ablation"
    for variant in ("infonce", "teachclip"):
        for seed in (0, 1):
            assert (out / variant / f"seed{seed}" / "metrics.json").exists()
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["variant"] for r in rows] == ["infonce", "teachclip"] and all(r["seeds"] == "2" for r in rows)
    assert "| teachclip | 2 |" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_variant_that_changes_the_cache_is_refused(cli_config):
    text = cli_config.read_text().replace('overrides = ["train.objective.kind=infonce"]', 'overrides = ["extract.sampling.num_frames=6"]')
    cli_config.write_text(text)
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config)])
    assert result.exit_code == 2 and "only [train] may vary" in result.output


def test_only_trains_the_named_variants(cli_config, tmp_path):
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config), "--only", "teachclip", "--set", "ablate.seeds=[0]"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "ablation" / "ablation.csv")))
    assert [r["variant"] for r in rows] == ["teachclip"] and not (tmp_path / "ablation" / "infonce").exists()
    bad = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config), "--only", "nope"])
    assert bad.exit_code == 2 and "--only names ['nope']" in bad.output
