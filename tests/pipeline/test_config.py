import pytest

from pipeline.config import Config, ConfigError, apply_overrides, dump_config, load_config


def test_shipped_demo_config_is_valid_and_its_teachers_see_more_than_the_student():
    from stages.extract.run import validate_config

    cfg = load_config("configs/demo.toml")
    validate_config(cfg.extract)
    assert cfg.extract.sampling.num_frames == 12
    frames = {f.name: f.model for f in cfg.extract.frame_encoders}
    visual = [t for t in cfg.extract.teachers if t.kind in ("xpool", "teachtext")]
    assert visual and all(frames[t.frames] == "teachcache-tiny-p8" != frames[cfg.train.frames] and t.temporal_layers >= 1 for t in visual)
    assert len({t.text for t in cfg.extract.teachers if t.kind == "teachtext"}) >= 3
    assert set(cfg.train.objective.teachers) <= {t.name for t in cfg.extract.teachers}


def test_overrides_reach_nested_fields_and_list_items():
    cfg = apply_overrides(Config(), ["extract.sampling.num_frames=16", "extract.frame_encoders.0.model=ViT-B-32", "extract.decode.timeout_s=5", "extract.store=/tmp/s"])
    assert cfg.extract.sampling.num_frames == 16
    assert cfg.extract.frame_encoders[0].model == "ViT-B-32"
    assert cfg.extract.decode.timeout_s == 5.0 and isinstance(cfg.extract.decode.timeout_s, float)
    assert cfg.extract.store == "/tmp/s"


@pytest.mark.parametrize(
    "override, message",
    [
        ("extract.sampling.frames=3", "no key 'frames'"),
        ("extract.sampling.num_frames=twelve", "expected int"),
        ("extract.frame_encoders.5.model=x", "not an index"),
        ("extract.sampling", "key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


def test_unknown_key_in_file_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[extract.sampling]\nnum_frame = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['num_frame'\] in \[extract.sampling\]"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_dump_round_trips_and_explains_fields(tmp_path):
    cfg = apply_overrides(load_config("configs/demo.toml"), ["extract.sampling.sampler=uniform"])
    text = dump_config(cfg)
    assert "num_frames = 12  # F: frames kept per video" in text
    path = tmp_path / "resolved.toml"
    path.write_text(text)
    assert load_config(path) == cfg


PROTOCOL = {  # data set: (frames F, words, epoch selected on) of METHOD sections 1 and 5
    "msrvtt": (12, 32, "test"),
    "msvd": (12, 32, "val"),
    "vatex": (12, 32, "val"),
    "didemo": (64, 64, "val"),
    "activitynet": (64, 64, "test"),
    "custom": (12, 32, "val"),
}


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_each_benchmark_config_follows_its_protocol_and_is_valid(name):
    from stages.extract.run import validate_config

    cfg = load_config(f"configs/{name}.toml")
    frames, words, selected = PROTOCOL[name]
    assert cfg.prepare.dataset == name and cfg.extract.data == f"data/{name}"
    assert cfg.extract.sampling.num_frames == frames and {t.max_words for t in cfg.extract.text_encoders} == {words}
    assert cfg.train.val_split == selected and cfg.train.student.max_frames >= frames
    assert set(cfg.train.objective.teachers) <= {t.name for t in cfg.extract.teachers}
    validate_config(cfg.extract)


def test_extends_merges_tables_and_refuses_a_circle(tmp_path):
    (tmp_path / "base.toml").write_text('[train]\nepochs = 3\nlr = 0.5\n[[extract.text_encoders]]\nname = "a"\n')
    (tmp_path / "top.toml").write_text('extends = "base.toml"\n[train]\nepochs = 7\n')
    cfg = load_config(tmp_path / "top.toml")
    assert (cfg.train.epochs, cfg.train.lr, [t.name for t in cfg.extract.text_encoders]) == (7, 0.5, ["a"])
    (tmp_path / "base.toml").write_text('extends = "top.toml"\n')
    with pytest.raises(ConfigError, match="goes round in a circle"):
        load_config(tmp_path / "top.toml")
