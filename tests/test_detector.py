"""The DCN detector: composition, conversion exactness from torchvision, deformable parts."""
import pytest
import torch
import torchvision

from model.convert import load_torchvision_weights
from model.detector import MultiScaleDeformRoIPool, dcn_mobilenet_v2_fpn, dcn_resnet50_fpn
from model.layers import ModulatedDeformConv2d


def test_converted_resnet50_fpn_gives_the_same_detections():
    torch.manual_seed(0)
    tv = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=320, max_size=320).eval()
    dcn = load_torchvision_weights(dcn_resnet50_fpn(min_size=320, max_size=320), tv).eval()
    assert sum(isinstance(m, ModulatedDeformConv2d) for m in dcn.modules()) == 3
    assert isinstance(dcn.roi_heads.box_roi_pool, MultiScaleDeformRoIPool)
    images = [torch.rand(3, 300, 280), torch.rand(3, 256, 320)]
    with torch.no_grad():
        expected, got = tv(images), dcn(images)
    # Same detections up to float32 summation order (im2col + GEMM vs a direct conv).
    for e, g in zip(expected, got):
        assert len(e["boxes"]) > 0 and len(g["boxes"]) == len(e["boxes"])
        torch.testing.assert_close(g["boxes"], e["boxes"], rtol=0, atol=1e-2)
        torch.testing.assert_close(g["scores"], e["scores"], rtol=0, atol=1e-4)
        assert torch.equal(g["labels"], e["labels"])


def test_conversion_rejects_a_mismatched_state_dict():
    tv = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None)
    with pytest.raises(ValueError, match="does not fit"):
        load_torchvision_weights(dcn_resnet50_fpn(), tv)


def test_mobilenet_detector_has_deformable_parts_and_trains():
    model = dcn_mobilenet_v2_fpn(num_classes=2, pretrained_backbone=False, min_size=128,
                                 max_size=128)
    assert sum(isinstance(m, ModulatedDeformConv2d) for m in model.modules()) == 3
    model.train()
    images = [torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 70.0]]), "labels": torch.tensor([1])}]
    losses = model(images, targets)
    sum(losses.values()).backward()
    offset_fc = model.roi_heads.box_roi_pool.roi_pool.offset_fc
    assert offset_fc.weight.grad is not None and offset_fc.weight.grad.abs().sum() > 0
    dcn = next(m for m in model.modules() if isinstance(m, ModulatedDeformConv2d))
    assert dcn.offset_conv.weight.grad.abs().sum() > 0


def test_plain_ablation_has_no_deformable_parts():
    model = dcn_mobilenet_v2_fpn(deformable=False, pretrained_backbone=False)
    assert not any(isinstance(m, ModulatedDeformConv2d) for m in model.modules())
    assert isinstance(model.roi_heads.box_roi_pool, torchvision.ops.MultiScaleRoIAlign)
