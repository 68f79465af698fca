"""The deformable layers: rigid at initialisation, trainable offsets, readable repr."""
import torch
import torch.nn.functional as F
import torchvision

from model.ops.layers import DeformConv2d, DeformRoIPool, ModulatedDeformConv2d, PSDeformRoIPool


def test_fresh_deform_conv_is_a_plain_conv():
    layer = DeformConv2d(4, 6, 3, stride=2, padding=1, groups=2, offset_groups=2)
    x = torch.randn(2, 4, 9, 9)
    ref = F.conv2d(x, layer.weight, layer.bias, stride=2, padding=1, groups=2)
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


def test_fresh_modulated_conv_is_half_a_plain_conv():
    layer = ModulatedDeformConv2d(4, 6, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(layer(x), 0.5 * F.conv2d(x, layer.weight, padding=1),
                               rtol=1e-5, atol=1e-5)


def test_offset_predictor_receives_gradients():
    layer = ModulatedDeformConv2d(4, 6, 3, padding=1)
    with torch.no_grad():  # move off the zero init so the offsets are not all integer
        layer.offset_conv.bias.uniform_(-0.5, 0.5)
    layer(torch.randn(2, 4, 9, 9)).square().sum().backward()
    assert layer.offset_conv.weight.grad.abs().sum() > 0
    assert layer.weight.grad.abs().sum() > 0


def test_fresh_deform_roi_pool_is_roi_align_and_learns_offsets():
    pool = DeformRoIPool(3, (2, 2), spatial_scale=0.5, sampling_ratio=2)
    x = torch.randn(2, 3, 10, 10, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 12.0, 14.0], [1, 0.0, 0.0, 19.0, 19.0]])
    out = pool(x, rois)
    ref = torchvision.ops.roi_align(x, rois, (2, 2), 0.5, 2, aligned=True)
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    assert pool.offset_fc.weight.grad.abs().sum() > 0


def test_fresh_ps_deform_roi_pool_is_ps_roi_align():
    pool = PSDeformRoIPool(2, 3, spatial_scale=1.0)
    x = torch.randn(1, 18, 12, 12)
    rois = torch.tensor([[0, 1.0, 2.0, 9.0, 10.0]])
    torch.testing.assert_close(pool(x, rois), torchvision.ops.ps_roi_align(x, rois, 3, 1.0, 2))


def test_repr_names_the_configuration():
    text = repr(ModulatedDeformConv2d(8, 16, 3, padding=1, offset_groups=2))
    assert "8, 16, kernel_size=(3, 3)" in text and "offset_groups=2" in text
    assert "gamma=0.1" in repr(DeformRoIPool(4, 7, 0.0625))
