"""The dcn operators: deformable convolution (DCNv1, DCNv2 with a mask), deformable RoI pooling
and its position-sensitive variant, as functions (`model.ops.functional`, registered kernels in
`torch.ops.dcn`), nn layers that own their offset predictors (`model.ops.layers`), and their ONNX
symbolics (`model.ops.onnx_symbolic`). `library` loads the compiled `model._C`.

    from model import ops
    y = ops.deform_conv2d(x, offset, weight, mask=mask)    # shapes: see the function's docstring
    layer = ops.ModulatedDeformConv2d(64, 64, 3, padding=1)

Imports nothing else of `model`. Importing this package loads the operator library (and torch).
"""
from .functional import deform_conv2d, deform_roi_pool, ps_deform_roi_pool
from .layers import DeformConv2d, DeformRoIPool, ModulatedDeformConv2d, PSDeformRoIPool

__all__ = ["deform_conv2d", "deform_roi_pool", "ps_deform_roi_pool", "DeformConv2d",
           "ModulatedDeformConv2d", "DeformRoIPool", "PSDeformRoIPool"]
