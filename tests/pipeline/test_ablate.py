import csv

from click.testing import CliRunner

from teachcache.pipeline.cli import main


def test_ablation_trains_every_variant_and_seed_and_writes_table_csv_chart(cli_config, tmp_path):
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "ablation"
    for variant in ("infonce", "teachclip"):
        for seed in (0, 1):
            assert (out / variant / f"seed{seed}" / "metrics.json").exists()
    rows = list(csv.DictReader((out / "ablation.csv").read_text().splitlines()))
    assert [r["variant"] for r in rows] == ["infonce", "teachclip"] and all(r["seeds"] == "2" for r in rows)
    assert "| teachclip | 2 |" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_variant_that_changes_the_cache_is_refused(cli_config):
    text = cli_config.read_text().replace('[ablate.variants.infonce]\ntrain.objective.kind = "infonce"', "[ablate.variants.infonce]\nextract.sampling.num_frames = 6")
    cli_config.write_text(text)
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config)])
    assert result.exit_code == 2 and "[ablate.variants.infonce] changes [extract]" in result.output
    assert not (tmp_path_of(cli_config) / "ablation" / "teachclip").exists()  # refused before any training


def tmp_path_of(config):
    return config.parent


def test_a_variant_with_a_bad_value_is_refused_before_any_training(cli_config, tmp_path):
    cli_config.write_text(cli_config.read_text() + '[ablate.variants.bad]\ntrain.student.video_head = "lstm"\n')
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config)])
    assert result.exit_code == 2 and "unknown video head 'lstm'" in result.output and "[ablate.variants.bad]" in result.output
    assert not (tmp_path / "ablation" / "infonce").exists()


def test_only_trains_the_named_variants(cli_config, tmp_path):
    result = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config), "--only", "teachclip", "--set", "ablate.seeds=[0]"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "ablation" / "ablation.csv").read_text().splitlines()))
    assert [r["variant"] for r in rows] == ["teachclip"] and not (tmp_path / "ablation" / "infonce").exists()
    bad = CliRunner().invoke(main, ["ablate", "--quiet", "--config", str(cli_config), "--only", "nope"])
    assert bad.exit_code == 2 and "--only names ['nope']" in bad.output


def test_a_second_ablation_reads_finished_variants_back_and_refuses_changed_ones(cli_config, tmp_path):
    args = ["ablate", "--quiet", "--config", str(cli_config), "--set", "ablate.seeds=[0]"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    weights = (tmp_path / "ablation" / "infonce" / "seed0" / "best.safetensors").read_bytes()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output == first.output  # the same table, from the finished runs
    assert (tmp_path / "ablation" / "infonce" / "seed0" / "best.safetensors").read_bytes() == weights
    changed = CliRunner().invoke(main, [*args, "--set", "ablate.shared.train.lr=0.01"])
    assert changed.exit_code == 2 and "lr: 0.0001 vs 0.01" in changed.output
    forced = CliRunner().invoke(main, [*args, "--set", "ablate.shared.train.lr=0.01", "--force"])
    assert forced.exit_code == 0, forced.output
