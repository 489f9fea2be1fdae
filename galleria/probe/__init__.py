"""The live probe: a visitor's own image or text run through a model in the page (ONNX in
onnxruntime-web) or by ``galleria serve`` (PyTorch), answered on the same scales as the gallery."""
