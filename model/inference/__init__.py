"""Tiled inference over any detector runtime, in NumPy: the runtime interface and the exported
folder format (`runtime`), tiling and merging (`tiling.TiledDetector`), test-time augmentation
(`tta`), box maths and NMS (`boxes`), and the sampling-point picture of `/offsets` (`sampling`).

Imports nothing else of `model`, and never torch: the service runs ONNX Runtime through it
without torch installed.
"""
