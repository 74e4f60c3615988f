from pathlib import Path

import pytest

from mindprint_interfaces.testing import BackendConformance

pytestmark = pytest.mark.mlx


class TestMLXBackend(BackendConformance):
    backend_name = "mlx"
    model_class_name = "MLXModel"
    other_model_class_name = "PyTorchModel"

    @pytest.fixture(scope="class")
    def model_dir(self, tiny_model_dir: Path) -> Path:
        return tiny_model_dir
