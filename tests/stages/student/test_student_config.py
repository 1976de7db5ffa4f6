"""What --resume and cached baselines compare: the settings that bear on results."""

from dataclasses import asdict

from teachcache.stages.student.config import TrainConfig, results_config


def test_keeping_weights_does_not_count_but_learning_settings_do():
    base = asdict(TrainConfig())
    kept = asdict(TrainConfig(keep_epoch_weights=True))
    faster = asdict(TrainConfig(lr=3e-4))
    assert results_config(kept) == results_config(base)
    assert results_config(faster) != results_config(base)


def test_a_run_saved_before_a_field_existed_reads_as_its_default():
    old = asdict(TrainConfig())
    del old["objective"]["mckd_relations"], old["keep_epoch_weights"]
    assert results_config(old) == results_config(asdict(TrainConfig()))
    old["objective"]["kind"] = "mckd"
    assert results_config(old) != results_config(asdict(TrainConfig()))
