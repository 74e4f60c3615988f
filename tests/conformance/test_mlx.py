import pytest

from .suite import BackendConformance

pytestmark = pytest.mark.mlx


class TestMLXBackend(BackendConformance):
    backend_name = "mlx"
    model_class_name = "MLXModel"
    other_model_class_name = "PyTorchModel"
