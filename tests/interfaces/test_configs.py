"""Config construction from dicts: callers pass dicts, so typos and bad values must be loud."""

from __future__ import annotations

import pytest

from mindprint_interfaces import AdapterConfig, ConfigError, DPOConfig, GenerationConfig, SFTConfig


def test_seed_dict_builds_sft_config() -> None:
    cfg = SFTConfig.from_dict({"learning_rate": 3e-4, "num_epochs": 1, "per_device_batch_size": 2, "lora_r": 8, "lora_alpha": 16})
    assert cfg.learning_rate == 3e-4
    assert cfg.per_device_batch_size == 2
    assert cfg.adapter_config() == AdapterConfig(r=8, alpha=16.0)
    assert cfg.adapter_config().scale == 2.0


def test_unknown_key_suggests_closest() -> None:
    with pytest.raises(ConfigError) as info:
        SFTConfig.from_dict({"learning_rat": 1e-4})
    assert 'unknown key "learning_rat"' in str(info.value)
    assert 'did you mean "learning_rate"?' in str(info.value)
    assert info.value.key == "learning_rat"


@pytest.mark.parametrize(
    ("cls", "data", "key"),
    [
        (SFTConfig, {"learning_rate": -1e-4}, "learning_rate"),
        (SFTConfig, {"learning_rate": 0}, "learning_rate"),
        (SFTConfig, {"lora_r": 0}, "lora_r"),
        (SFTConfig, {"per_device_batch_size": 0}, "per_device_batch_size"),
        (SFTConfig, {"warmup_ratio": 1.5}, "warmup_ratio"),
        (DPOConfig, {"beta": 0}, "beta"),
        (DPOConfig, {"beta": -0.1}, "beta"),
        (DPOConfig, {"loss_type": "kto"}, "loss_type"),
        (DPOConfig, {"reference": "teacher"}, "reference"),
        (DPOConfig, {"label_smoothing": 0.1}, "label_smoothing"),  # only valid with robust
        (GenerationConfig, {"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_out_of_range_names_the_key(cls: type[SFTConfig], data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        cls.from_dict(data)
    assert info.value.key == key
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"lora_r": 8.5}, "lora_r"),
        ({"lora_r": True}, "lora_r"),
        ({"target_modules": "q_proj"}, "target_modules"),
        ({"completion_only_loss": "yes"}, "completion_only_loss"),
    ],
)
def test_wrong_type_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SFTConfig.from_dict(data)
    assert info.value.key == key


def test_yaml_style_values_are_coerced() -> None:
    cfg = DPOConfig.from_dict({"learning_rate": "5e-7", "target_modules": ["q_proj", "v_proj"], "max_steps": 10.0})
    assert cfg.learning_rate == 5e-7
    assert cfg.target_modules == ("q_proj", "v_proj")
    assert cfg.max_steps == 10


def test_robust_accepts_label_smoothing() -> None:
    cfg = DPOConfig.from_dict({"loss_type": "robust", "label_smoothing": 0.1})
    assert cfg.label_smoothing == 0.1


def test_coerce_accepts_instance_mapping_or_none() -> None:
    cfg = SFTConfig(learning_rate=1e-3)
    assert SFTConfig.coerce(cfg) is cfg
    assert SFTConfig.coerce({"learning_rate": 1e-3}) == cfg
    assert SFTConfig.coerce(None) == SFTConfig()
    with pytest.raises(TypeError):
        SFTConfig.coerce(3)  # type: ignore[arg-type]


def test_aliases_and_replace() -> None:
    cfg = SFTConfig.from_dict({"lr": 1e-3, "batch_size": 3, "epochs": 2})
    assert (cfg.learning_rate, cfg.per_device_batch_size, cfg.num_epochs) == (1e-3, 3, 2.0)
    assert cfg.replace(seed=7).seed == 7
    with pytest.raises(ConfigError):
        cfg.replace(seed=-0.5)


def test_prefix_in_nested_errors() -> None:
    with pytest.raises(ConfigError) as info:
        SFTConfig.from_dict({"lora_rr": 4}, prefix="sft.")
    assert info.value.key == "sft.lora_rr"
    assert 'did you mean "lora_r"?' in str(info.value)


def test_public_names_and_the_old_private_ones_are_the_same_objects() -> None:
    from mindprint_interfaces import ConfigBase, TrainConfigBase, _validation, validation
    from mindprint_interfaces.configs import _FromDict, _TrainConfigBase

    assert _TrainConfigBase is TrainConfigBase and _FromDict is ConfigBase
    assert _validation.check is validation.check and _validation.build is validation.build
    assert _validation.suggest is validation.suggest and _validation.coerce is validation.coerce


@pytest.mark.parametrize("cls", [AdapterConfig, SFTConfig, DPOConfig, GenerationConfig])
def test_every_field_is_documented(cls: type) -> None:
    from mindprint_interfaces import BackendConfig, CurriculumConfig, field_docs

    for c in (cls, BackendConfig, CurriculumConfig):
        docs = field_docs(c)
        assert [d.name for d in docs] == [f.name for f in __import__("dataclasses").fields(c)]
        assert all(d.doc for d in docs), [d.name for d in docs if not d.doc]


def test_field_docs_carry_defaults_hf_names_and_aliases() -> None:
    docs = {d.name: d for d in DPOConfig.field_docs()}
    assert docs["learning_rate"].default == DPOConfig().learning_rate  # the subclass's own default
    assert docs["learning_rate"].aliases == ("lr",)
    assert docs["num_epochs"].hf == "num_train_epochs"
    assert docs["loss_type"].type == "one of: sigmoid, ipo, hinge, robust"
    assert docs["lora_layers"].type == "list of int or null"


def test_curriculum_config_checks_its_knobs() -> None:
    from mindprint_interfaces import CurriculumConfig

    assert CurriculumConfig.from_dict({"max_retries": 0, "sft_epochs": 2}).max_retries_per_topic == 0
    for data, key in [({"topic_pass_threshold": 1.5}, "topic_pass_threshold"),
                      ({"dpo_steps_per_topic": 0}, "dpo_steps_per_topic"),
                      ({"eval_max_records": 0}, "eval_max_records")]:
        with pytest.raises(ConfigError) as info:
            CurriculumConfig.from_dict(data, prefix="pipeline.")
        assert info.value.key == f"pipeline.{key}"


def test_literal_errors_list_the_choices_as_typed() -> None:
    from mindprint_interfaces import BackendConfig

    with pytest.raises(ConfigError, match=r"^device: must be one of auto, cpu, cuda, mps, gpu, metal, got 'tpu'$"):
        BackendConfig.from_dict({"device": "tpu"})
