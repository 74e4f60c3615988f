from __future__ import annotations

import pytest
from mindprint_interfaces import ConfigError, DPOConfig, SFTConfig
from mindprint_pipeline import PipelineConfig


def test_defaults_match_the_seed() -> None:
    cfg = PipelineConfig()
    assert (cfg.accuracy_threshold, cfg.dpo_trigger_threshold, cfg.topic_pass_threshold) == (0.70, 0.75, 0.90)
    assert cfg.merge_after_unit is True
    assert cfg.max_retries_per_topic == 2
    assert cfg.backend_type is None
    assert str(cfg.checkpoint_path).replace("\\", "/") == "outputs/checkpoints"


def test_from_dict_rejects_unknown_keys_with_suggestion() -> None:
    with pytest.raises(ConfigError, match='did you mean "accuracy_threshold"'):
        PipelineConfig.from_dict({"accuracy_treshold": 0.5})


def test_from_dict_aliases_and_types() -> None:
    cfg = PipelineConfig.from_dict({"backend": "pytorch", "sft_epochs": 2, "dpo_beta": "0.2", "max_retries": 0})
    assert cfg.backend_type == "pytorch"
    assert cfg.sft_epochs_per_topic == 2.0
    assert cfg.dpo_beta == 0.2
    assert cfg.max_retries_per_topic == 0
    with pytest.raises(ConfigError, match="sft_batch_size: expected an integer"):
        PipelineConfig.from_dict({"sft_batch_size": "four"})


@pytest.mark.parametrize("key", ["accuracy_threshold", "dpo_trigger_threshold", "topic_pass_threshold"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_thresholds_are_range_checked(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        PipelineConfig.from_dict({key: value})


def test_other_ranges() -> None:
    with pytest.raises(ConfigError, match="max_retries_per_topic"):
        PipelineConfig(max_retries_per_topic=-1)
    with pytest.raises(ConfigError, match="dpo_steps_per_topic"):
        PipelineConfig(dpo_steps_per_topic=0)


def test_derived_trainer_configs() -> None:
    cfg = PipelineConfig(sft_epochs_per_topic=2, sft_learning_rate=1e-3, sft_batch_size=2, dpo_steps_per_topic=5,
                         dpo_beta=0.2, dpo_loss_type="ipo", lora_r=4, lora_alpha=8, sft={"warmup_ratio": 0.1},
                         dpo={"reference": "base"})
    sft = cfg.sft_config(seed=7)
    assert isinstance(sft, SFTConfig)
    assert (sft.num_epochs, sft.learning_rate, sft.per_device_batch_size, sft.seed) == (2.0, 1e-3, 2, 7)
    assert (sft.lora_r, sft.lora_alpha, sft.warmup_ratio) == (4, 8.0, 0.1)
    dpo = cfg.dpo_config(seed=8)
    assert isinstance(dpo, DPOConfig)
    assert (dpo.max_steps, dpo.beta, dpo.loss_type, dpo.reference, dpo.seed) == (5, 0.2, "ipo", "base", 8)
    assert (dpo.lora_r, dpo.lora_alpha) == (4, 8.0)


def test_bad_overrides_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match='sft.learning_rat.*did you mean "learning_rate"'):
        PipelineConfig(sft={"learning_rat": 1e-4})
    with pytest.raises(ConfigError, match="dpo.beta"):
        PipelineConfig(dpo={"beta": -1})
    with pytest.raises(ConfigError, match="label_smoothing"):
        PipelineConfig(dpo={"label_smoothing": 0.1})  # only with loss_type robust


def test_training_fingerprint_ignores_paths() -> None:
    a = PipelineConfig(output_dir="a", data_dir="x", device="cpu").training_fingerprint()
    b = PipelineConfig(output_dir="b", data_dir="y", device="auto").training_fingerprint()
    assert a == b
    assert a != PipelineConfig(seed=1).training_fingerprint()


def test_round_trip() -> None:
    cfg = PipelineConfig(backend_type="mlx", sft={"warmup_ratio": 0.1})
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
