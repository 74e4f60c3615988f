from __future__ import annotations

from pathlib import Path

import pytest

from mindprint_interfaces import BackendConfig, ConfigError, CurriculumConfig, DPOConfig, SFTConfig
from mindprint_pipeline import PipelineConfig


def test_defaults_come_from_the_schema() -> None:
    cfg = PipelineConfig()
    curriculum = CurriculumConfig()
    for name in curriculum.to_dict():
        assert getattr(cfg, name) == getattr(curriculum, name), name
    assert (cfg.accuracy_threshold, cfg.dpo_trigger_threshold, cfg.topic_pass_threshold) == (0.5, 0.8, 0.6)
    assert cfg.max_retries_per_topic == 1
    assert cfg.sft == SFTConfig() and cfg.dpo == DPOConfig()
    assert (cfg.device, cfg.dtype) == (BackendConfig().device, BackendConfig().dtype)
    assert cfg.merge_after_unit is True
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
    assert cfg.dpo.beta == 0.2  # typed: the flat name is a shorthand for the dpo section's key
    assert cfg.max_retries_per_topic == 0
    with pytest.raises(ConfigError, match="sft_batch_size: expected an integer"):
        PipelineConfig.from_dict({"sft_batch_size": "four"})
    with pytest.raises(ConfigError, match='unknown key "dpo_bta" \\(did you mean "dpo_beta"\\?\\)'):
        PipelineConfig.from_dict({"dpo_bta": 0.2})


@pytest.mark.parametrize(("flat", "value", "targets"), [
    ("sft_learning_rate", 1e-3, [("sft", "learning_rate")]),
    ("sft_batch_size", 2, [("sft", "per_device_batch_size")]),
    ("sft_max_length", 64, [("sft", "max_length"), ("dpo", "max_length")]),
    ("dpo_learning_rate", 5e-6, [("dpo", "learning_rate")]),
    ("dpo_batch_size", 1, [("dpo", "per_device_batch_size")]),
    ("dpo_beta", 0.3, [("dpo", "beta")]),
    ("dpo_loss_type", "ipo", [("dpo", "loss_type")]),
    ("lora_r", 4, [("sft", "lora_r"), ("dpo", "lora_r")]),
    ("lora_alpha", 8.0, [("sft", "lora_alpha"), ("dpo", "lora_alpha")]),
])
def test_flat_names_map_to_typed_fields(flat: str, value: object, targets: list[tuple[str, str]]) -> None:
    cfg = PipelineConfig.from_dict({flat: value})
    assert isinstance(cfg.sft, SFTConfig) and isinstance(cfg.dpo, DPOConfig)
    for section, key in targets:
        assert getattr(getattr(cfg, section), key) == value
    assert getattr(cfg, flat) == value
    untouched = {"sft", "dpo"} - {s for s, _ in targets}
    for section in untouched:
        assert getattr(cfg, section) == type(getattr(cfg, section))()


def test_key_inside_the_section_wins_over_the_flat_name() -> None:
    cfg = PipelineConfig.from_dict({"dpo_beta": 0.3, "dpo": {"beta": 0.5}, "lora_r": 4, "sft": {"lora_rank": 16}})
    assert cfg.dpo.beta == 0.5
    assert (cfg.sft.lora_r, cfg.dpo.lora_r) == (16, 4)
    with pytest.raises(ConfigError, match="dpo_beta"):
        PipelineConfig.from_dict({"dpo_beta": 0.3, "dpo": DPOConfig()})


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
    cfg = PipelineConfig.from_dict({
        "sft_epochs_per_topic": 2, "sft_learning_rate": 1e-3, "sft_batch_size": 2, "dpo_steps_per_topic": 5,
        "dpo_beta": 0.2, "dpo_loss_type": "ipo", "lora_r": 4, "lora_alpha": 8, "sft": {"warmup_ratio": 0.1},
        "dpo": {"reference": "base"}})
    sft = cfg.sft_config(seed=7)
    assert isinstance(sft, SFTConfig)
    assert (sft.num_epochs, sft.learning_rate, sft.per_device_batch_size, sft.seed) == (2.0, 1e-3, 2, 7)
    assert (sft.lora_r, sft.lora_alpha, sft.warmup_ratio) == (4, 8.0, 0.1)
    dpo = cfg.dpo_config(seed=8)
    assert isinstance(dpo, DPOConfig)
    assert (dpo.max_steps, dpo.beta, dpo.loss_type, dpo.reference, dpo.seed) == (5, 0.2, "ipo", "base", 8)
    assert (dpo.lora_r, dpo.lora_alpha) == (4, 8.0)
    assert str(Path(dpo.output_dir)) == str(Path("outputs") / "runs")


def test_explicit_max_steps_wins_over_the_per_topic_amount() -> None:
    cfg = PipelineConfig(dpo=DPOConfig(max_steps=3), sft=SFTConfig(max_steps=2), dpo_steps_per_topic=7)
    assert cfg.dpo_config(seed=0).max_steps == 3
    assert cfg.sft_config(seed=0).max_steps == 2  # HF semantics: max_steps > 0 overrides the epochs
    assert PipelineConfig(dpo_steps_per_topic=7).dpo_config(seed=0).max_steps == 7


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
    cfg = PipelineConfig(backend_type="mlx", sft={"warmup_ratio": 0.1})  # a dict still works
    assert cfg.sft == SFTConfig(warmup_ratio=0.1)
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg


def test_fingerprint_is_json_shaped_and_ignores_per_attempt_keys() -> None:
    import json

    fp = PipelineConfig().training_fingerprint()
    assert json.loads(json.dumps(fp)) == fp
    assert fp["dpo.beta"] == 0.1 and fp["sft.target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert "sft.seed" not in fp and "dpo.output_dir" not in fp
    assert fp != PipelineConfig(dpo=DPOConfig(beta=0.2)).training_fingerprint()


def test_fingerprint_covers_the_preference_method_section() -> None:
    """A changed ``orpo.beta`` on an ORPO curriculum changes what is trained: a resume must see it."""
    orpo = PipelineConfig(preference_method="orpo")
    fp = orpo.training_fingerprint()
    assert fp["orpo.beta"] == orpo.orpo.beta
    assert fp != PipelineConfig(preference_method="orpo", orpo={"beta": 0.5}).training_fingerprint()
    assert "orpo.beta" not in PipelineConfig().training_fingerprint()  # dpo: the fingerprint of earlier runs
