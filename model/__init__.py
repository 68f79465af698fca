"""dcnserve's model: the deformable operators, the detector built from them, its runtimes, tiled
inference and training. One subpackage per layer; each imports only itself and the layers below
it (tests/test_layering.py holds this):

    package          holds                                                may import (model.*)
    model.ops        the dcn operators' Python face: functions, nn layers, nothing
                     ONNX symbolics; loads the compiled library model/_C
    model.inference  tiled inference over any runtime: tiling, test-time  nothing (and never
                     augmentation, merging, boxes, the sampling picture  torch: NumPy only)
    model.detector   detector builders, checkpoints, weight conversion,   ops
                     offset probes
    model.runtimes   the detector on eager PyTorch, TorchScript or ONNX   ops, inference,
                     Runtime; export; the Triton repository writer        detector
    model.training   data, training, evaluation, release                  all of the above

The modules beside the subpackages (`train`, `evaluate`, `release`, `triton`) are the command
lines: `python -m model.train` and so on. Importing `model` loads nothing.
"""
