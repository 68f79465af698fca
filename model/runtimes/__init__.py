"""The detector on a runtime: eager PyTorch and TorchScript (`pytorch`), ONNX Runtime with the
dcn custom-op library (`ort`), the export of a checkpoint into a runtime folder (`export`), the
factory that picks, exports, caches and loads them (`loading.load_runtime`), and the Triton
model-repository writer (`triton`).

Imports `model.ops`, `model.inference` and `model.detector`. `loading` and `ort` import no torch
at module level: an exported ONNX Runtime folder is served without it.
"""
