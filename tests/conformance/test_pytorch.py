import pytest

from .suite import BackendConformance

pytestmark = pytest.mark.torch


class TestPyTorchBackend(BackendConformance):
    backend_name = "pytorch"
    model_class_name = "PyTorchModel"
    other_model_class_name = "MLXModel"
