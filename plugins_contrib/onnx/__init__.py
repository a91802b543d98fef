"""The ``onnx`` model flavor through onnxruntime: ``pip install 'mlplatform[onnx]'``."""
