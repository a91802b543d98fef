"""Registers the ``onnx`` model flavor.

onnxruntime is imported only when a model is loaded, so this plugin loads, and lists itself,
without ``pip install 'mlplatform[onnx]'``.
"""

from __future__ import annotations

from mlplatform import hookimpl
from mlplatform.core.backends import ModelFlavor
from plugins_contrib.onnx.flavor import OnnxFlavor

__all__ = ["OnnxFlavor", "register_model_flavors"]


@hookimpl
def register_model_flavors() -> list[type[ModelFlavor]]:
    return [OnnxFlavor]
