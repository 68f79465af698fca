"""ONNX export of modules that use the dcn operators (TorchScript-based exporter).

The symbolics of the dcn operators live here, beside the ops (model.ops); each op becomes one node
of the custom domain "dcn" (run the graph with ``onnx_plugins.session``):

- ``dcn::DeformConv2d(X, W, offset, [B], [mask])``, attributes ``kernel_shape, strides, pads,
  dilations, group, offset_group`` exactly as ONNX ``DeformConv``;
- ``dcn::DeformRoIPool(X, rois, [offset])`` and ``dcn::PSDeformRoIPool(X, rois, [offset])``,
  attributes ``output_dim, pooled_size, spatial_scale, sampling_ratio, gamma, aligned``.

With ``standard_deform_conv=True`` deformable convolutions are exported as the standard opset-19
``DeformConv`` instead, which plain ONNX Runtime runs without the plugin (the RoI ops have no
standard equivalent).
"""
import contextlib
import warnings
from typing import Dict, List, Optional, Sequence

import torch

from .layers import DeformRoIPool

OPSET = 19
_DOMAIN_VERSION = 1


def _is_none(v) -> bool:
    return v is None or v.node().mustBeNone()


def _deform_conv2d(standard: bool):
    def symbolic(g, input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups,
                 offset_groups):
        from torch.onnx import symbolic_helper as sym

        kh, kw = sym._get_tensor_sizes(weight)[2:]
        ints = lambda v: sym._maybe_get_const(v, "i")  # noqa: E731
        inputs = [input, weight, offset]
        has_mask = not _is_none(mask)
        if not _is_none(bias):
            inputs.append(bias)
        elif has_mask:  # keep the mask in its slot: an empty-name bias input
            inputs.append(g.op("prim::Constant").setType(torch._C.OptionalType.ofTensor()))
        if has_mask:
            inputs.append(mask)
        attrs = dict(kernel_shape_i=[kh, kw], strides_i=[ints(sh), ints(sw)],
                     pads_i=[ints(ph), ints(pw), ints(ph), ints(pw)],
                     dilations_i=[ints(dh), ints(dw)], group_i=ints(groups),
                     offset_group_i=ints(offset_groups))
        name = "DeformConv" if standard else "dcn::DeformConv2d"
        return g.op(name, *inputs, **attrs)

    return symbolic


def _roi_pool(name: str):
    def symbolic(g, input, rois, offset, pooled_h, pooled_w, spatial_scale, sampling_ratio, gamma,
                 aligned):
        from torch.onnx import symbolic_helper as sym

        inputs = [input, rois] + ([] if _is_none(offset) else [offset])
        return g.op(f"dcn::{name}", *inputs,
                    pooled_size_i=[sym._maybe_get_const(pooled_h, "i"),
                                   sym._maybe_get_const(pooled_w, "i")],
                    spatial_scale_f=sym._maybe_get_const(spatial_scale, "f"),
                    sampling_ratio_i=sym._maybe_get_const(sampling_ratio, "i"),
                    gamma_f=sym._maybe_get_const(gamma, "f"),
                    aligned_i=int(sym._maybe_get_const(aligned, "b")))

    return symbolic


@contextlib.contextmanager
def dcn_symbolics(standard_deform_conv: bool = False):
    """Registers the dcn symbolic functions for the duration of an export."""
    table = {
        "dcn::deform_conv2d": _deform_conv2d(standard_deform_conv),
        "dcn::deform_roi_pool": _roi_pool("DeformRoIPool"),
        "dcn::ps_deform_roi_pool": _roi_pool("PSDeformRoIPool"),
    }
    for name, fn in table.items():
        torch.onnx.register_custom_op_symbolic(name, fn, OPSET)
    try:
        yield
    finally:
        for name in table:
            torch.onnx.unregister_custom_op_symbolic(name, OPSET)


def export(module: torch.nn.Module, args: tuple, path: str, input_names: Sequence[str],
           output_names: Sequence[str], dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None,
           standard_deform_conv: bool = False) -> None:
    """Exports `module` called on `args` to the ONNX file `path` (opset 19 + domain dcn v1).

    dynamic_axes: as torch.onnx.export, e.g. {"image": {0: "batch", 2: "height", 3: "width"}}.
    """
    with dcn_symbolics(standard_deform_conv), torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but the dynamo one cannot export detectors with
        # data-dependent shapes yet; it is used on purpose.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module.eval(), args, path, input_names=list(input_names),
            output_names=list(output_names), dynamic_axes=dynamic_axes or {},
            opset_version=OPSET, dynamo=False,
            custom_opsets={} if standard_deform_conv and not _uses_roi(module)
            else {"dcn": _DOMAIN_VERSION},
        )


def _uses_roi(module: torch.nn.Module) -> bool:
    return any(isinstance(m, DeformRoIPool) for m in module.modules())


__all__: List[str] = ["export", "dcn_symbolics", "OPSET"]
