"""The shipped conformance kit: optional pytest, capability flags that skip with the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mindprint_interfaces.testing import BackendConformance


class _NoOptionalCapabilities(BackendConformance):  # not collected: no Test prefix
    backend_name = "minimal"
    supports_dpo = False
    supports_merge = False
    supports_distributed = False
    supports_generation_seed = False
    adapter_formats = ("peft",)
    methods = ("sft",)


def test_interfaces_import_does_not_import_pytest() -> None:
    code = "import sys, mindprint_interfaces, mindprint_interfaces.registry; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_testing_without_pytest_names_the_extra() -> None:
    code = ("import sys; sys.modules['pytest'] = None\n"
            "try:\n    import mindprint_interfaces.testing\nexcept ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'mindprint-interfaces[testing]'" in out.stdout


@pytest.mark.parametrize(("test_name", "args", "reason"), [
    ("test_dpo_step0_is_ln2_and_reports_trl_metrics", 3, "does not support DPO"),
    ("test_save_pretrained_reloads_identically", 3, "does not support merged saving"),
    ("test_registered_launcher_and_rank_variables", 0, "does not support data-parallel launching"),
    ("test_seeded_sampling_is_reproducible", 1, "does not support seeded sampling"),
    ("test_registered_converter_matches_saved_layout", 4, "does not support the mlx adapter layout"),
])
def test_switched_off_capability_skips_before_any_work(test_name: str, args: int, reason: str) -> None:
    test = getattr(_NoOptionalCapabilities(), test_name)
    with pytest.raises(pytest.skip.Exception, match=f"minimal backend {reason}"):
        test(*([None] * args))  # no backend or model: the skip must come first


def test_default_flags_claim_every_capability() -> None:
    suite = BackendConformance
    assert suite.supports_dpo and suite.supports_merge and suite.supports_distributed
    assert suite.supports_generation_seed and set(suite.adapter_formats) == {"peft", "mlx"}



def test_switched_off_method_skips_before_any_work() -> None:
    test = _NoOptionalCapabilities().test_preference_method_trains_with_trl_metrics
    with pytest.raises(pytest.skip.Exception, match="minimal backend does not support the orpo method"):
        test(None, None, None, "orpo")  # type: ignore[arg-type]


def test_default_methods_are_every_registered_method() -> None:
    from mindprint_interfaces.methods import method_names

    assert set(BackendConformance.methods) == set(method_names())
