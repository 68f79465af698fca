"""The DCN detector: composition, conversion exactness from torchvision, deformable parts."""
import pytest
import torch
import torchvision

from model.detector.builders import MultiScaleDeformRoIPool, dcn_mobilenet_v2_fpn, dcn_resnet50_fpn
from model.detector.convert import load_torchvision_weights
from model.ops.layers import ModulatedDeformConv2d


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


def test_pooler_applies_fc6_per_level_as_the_head_would_after_pooling():
    """The box head's fc6 runs per FPN level inside the pooler: equal to pooling every RoI, then
    fc6 on the whole [K, C*7*7] (torchvision's order), for two images whose RoIs span levels,
    with trained-like (non-zero) offsets; TorchScript included."""
    torch.manual_seed(0)
    fc6 = torch.nn.Linear(8 * 7 * 7, 16)
    projected = MultiScaleDeformRoIPool(["0", "1", "2"], 8, fc6=fc6).eval()
    plain = MultiScaleDeformRoIPool(["0", "1", "2"], 8).eval()
    plain.load_state_dict(projected.state_dict(), strict=False)
    for pool in (projected, plain):
        torch.nn.init.normal_(pool.roi_pool.offset_fc.weight, std=0.01)
    plain.roi_pool.offset_fc.load_state_dict(projected.roi_pool.offset_fc.state_dict())
    features = {"0": torch.randn(2, 8, 32, 32), "1": torch.randn(2, 8, 16, 16),
                "2": torch.randn(2, 8, 8, 8)}
    boxes = [torch.tensor([[4.0, 4.0, 40.0, 30.0], [10.0, 10.0, 250.0, 240.0],
                           [0.0, 0.0, 120.0, 130.0]]),
             torch.tensor([[50.0, 60.0, 70.0, 90.0], [5.0, 5.0, 200.0, 100.0]])]
    shapes = [(256, 256), (256, 256)]
    with torch.no_grad():
        want = fc6(plain(features, boxes, shapes).flatten(1))
        got = projected(features, boxes, shapes)
        scripted = torch.jit.script(projected)(features, boxes, shapes)
    assert got.shape == (5, 16)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scripted, want, rtol=1e-5, atol=1e-5)


def test_checkpoints_from_before_the_projected_pooler_still_load(tmp_path):
    """Checkpoints saved with fc6 under roi_heads.box_head (the shipped one too) load into the
    detector whose pooler owns it (model.detector.checkpoint.RENAMED)."""
    from safetensors.torch import save_file

    from model.detector import checkpoint

    model = dcn_mobilenet_v2_fpn(pretrained_backbone=False)
    state = {k.replace("roi_heads.box_roi_pool.fc6.", "roi_heads.box_head.fc6."): v.clone()
             for k, v in model.state_dict().items()}
    assert "roi_heads.box_head.fc6.weight" in state
    save_file(state, str(tmp_path / "old.safetensors"))
    fresh = dcn_mobilenet_v2_fpn(pretrained_backbone=False)
    checkpoint.load_weights(fresh, str(tmp_path / "old"))
    assert torch.equal(fresh.roi_heads.box_roi_pool.fc6.weight,
                       state["roi_heads.box_head.fc6.weight"])
