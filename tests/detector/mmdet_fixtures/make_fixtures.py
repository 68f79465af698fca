"""Builds the mmdetection reference fixtures of tests/detector/test_mmdet_parity.py. Run it in
an environment with mmdetection 3.x and mmcv 2.x (never part of `make test`):

    /work/mmref/venv/bin/python tests/detector/mmdet_fixtures/make_fixtures.py

For each config it builds the model in mmdetection, saves seeded weights (seeded_weights.py,
keyed by mmdetection's names) as an mmdetection checkpoint, loads it back through
mmdetection's `init_detector`, and runs mmdetection's own inference on scikit-image photos
(stored here as `photos.npz`, so the tests need no scikit-image), recording per stage:
network input, backbone and FPN maps (slices + statistics), deformable-conv offsets,
proposals, class scores of the first RoIs, final detections. Output: <config>.npz and
keys.json (mmdetection's state-dict keys and shapes per config). DeformRoIPool has no CPU
kernel in mmcv: for the dpool config the stages up to the proposals are recorded.
"""
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from seeded_weights import seeded_state  # noqa: E402

CONFIGS = {
    "faster-rcnn_r50_fpn_1x_coco": "faster_rcnn",
    "faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco": "dcn",
    "faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco": "dcnv2",
    "faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco": "dcnv2",
    "faster-rcnn_r50_fpn_dpool_1x_coco": "dcn",
}
PHOTOS = ("coffee", "chelsea")  # 600x400 and 451x300 RGB
SLICE = (slice(0, 1), slice(0, 4), slice(0, 6), slice(0, 6))
ROIS_KEPT = 40  # class scores stored for the first RoIs


def photos():
    path = os.path.join(HERE, "photos.npz")
    if not os.path.exists(path):
        import skimage.data

        np.savez_compressed(path, **{n: getattr(skimage.data, n)() for n in PHOTOS})
    return dict(np.load(path))


def summary(prefix, x, out):
    x = x.detach().float()
    out[prefix + "_slice"] = x[SLICE].numpy()
    out[prefix + "_stats"] = np.array([x.mean(), x.std(), x.abs().max(), x.abs().mean()],
                                      dtype=np.float64)
    out[prefix + "_shape"] = np.array(x.shape)


def run_config(name, folder, images, keys_out):
    import mmdet
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config
    from mmengine.runner import save_checkpoint

    cfg_path = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", folder,
                            name + ".py")
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.init_cfg = None
    model = init_detector(cfg, None, device="cpu")
    keys = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    keys_out[name] = keys
    from mmdet.evaluation import get_classes

    ckpt = os.path.join("/tmp", f"mmdet_seeded_{name}.pth")
    save_checkpoint({"meta": {"dataset_meta": {"classes": list(get_classes("coco"))}},
                     "state_dict": seeded_state(keys)}, ckpt)
    model = init_detector(cfg, ckpt, device="cpu")
    dpool = "dpool" in name
    out = {}
    offsets = {}
    for mname, m in model.backbone.named_modules():
        if mname.endswith("conv_offset"):
            m.register_forward_hook(lambda mod, i, o, n=mname: offsets.__setitem__(n, o))
    for photo, rgb in images.items():
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg

        pipeline_cfg = get_test_pipeline_cfg(cfg)
        pipeline_cfg[0].type = "mmdet.LoadImageFromNDArray"
        pipeline = Compose(pipeline_cfg)
        data = pipeline(dict(img=bgr, img_id=0))
        batch = model.data_preprocessor({"inputs": [data["inputs"]],
                                         "data_samples": [data["data_samples"]]}, False)
        inputs, samples = batch["inputs"], batch["data_samples"]
        p = photo + "_"
        with torch.no_grad():
            summary(p + "input", inputs, out)
            out[p + "resized_uint8_sum"] = np.array(data["inputs"].long().sum().item())
            out[p + "img_shape"] = np.array(samples[0].img_shape)
            body = model.backbone(inputs)
            for i, x in enumerate(body):
                summary(f"{p}backbone{i}", x, out)
            for n in sorted(offsets)[:1] + sorted(offsets)[-1:]:
                summary(f"{p}offset_{n}", offsets[n], out)
            feats = model.neck(body)
            for i, x in enumerate(feats):
                summary(f"{p}fpn{i}", x, out)
            proposals = model.rpn_head.predict(feats, samples, rescale=False)
            out[p + "proposals"] = proposals[0].bboxes.numpy()
            out[p + "proposal_scores"] = proposals[0].scores.numpy()
            if dpool:
                continue
            captured = {}
            hook = model.roi_head.bbox_head.register_forward_hook(
                lambda mod, i, o, c=captured: c.__setitem__("cls", o[0]))
            start = time.perf_counter()
            result = inference_detector(model, bgr)
            seconds = time.perf_counter() - start
            hook.remove()
            out[p + "class_scores"] = torch.softmax(captured["cls"], -1)[:ROIS_KEPT].numpy()
            det = result.pred_instances
            out[p + "boxes"] = det.bboxes.numpy()
            out[p + "scores"] = det.scores.numpy()
            out[p + "labels"] = det.labels.numpy()
            out[p + "seconds"] = np.array(seconds)
            print(f"{name} {photo}: {len(det.scores)} detections, top score "
                  f"{float(det.scores.max()) if len(det.scores) else 0:.3f}, {seconds:.1f} s",
                  flush=True)
    np.savez_compressed(os.path.join(HERE, name + ".npz"), **out)
    os.remove(ckpt)


def main():
    import mmcv
    import mmdet

    torch.set_num_threads(2)
    images = photos()
    keys = {}
    for name, folder in CONFIGS.items():
        run_config(name, folder, images, keys)
    with open(os.path.join(HERE, "keys.json"), "w") as f:
        json.dump({"mmdet": mmdet.__version__, "mmcv": mmcv.__version__,
                   "torch": torch.__version__, "keys": keys}, f)


if __name__ == "__main__":
    main()
