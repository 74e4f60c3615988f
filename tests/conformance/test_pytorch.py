from pathlib import Path

import pytest

from mindprint_interfaces.testing import BackendConformance

pytestmark = pytest.mark.torch


class TestPyTorchBackend(BackendConformance):
    backend_name = "pytorch"
    model_class_name = "PyTorchModel"
    other_model_class_name = "MLXModel"

    @pytest.fixture(scope="class")
    def model_dir(self, tiny_model_dir: Path) -> Path:
        return tiny_model_dir
