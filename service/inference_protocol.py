"""The Open Inference Protocol v2 (KServe, Triton) for the served detectors, shared by the REST
routes (service.routes.inference_protocol) and the gRPC service (service.grpc_service).

Inputs, one of:
  IMAGE   BYTES [1]: an encoded image (JPEG, PNG, ...), or [B] for a batch of B;
          in JSON a base64 string
  PIXELS  UINT8 [H, W, 3] RGB pixels, or [B, H, W, 3]
Parameters: score_threshold (default 0.3), max_detections (default 300).
Outputs, for one image (N detections, best first):
  BOXES [N, 4] FP32 x1, y1, x2, y2 in pixels; SCORES [N] FP32; CLASS_IDS [N] INT64 (1-based);
  CLASS_NAMES [N] BYTES; NUM_DETECTIONS [1] INT32.
For a batch, each output gets a leading [B] and is padded to the largest N (zeros, empty
names); NUM_DETECTIONS [B] says how many rows of each are real.
"""
import base64
import binascii
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from starlette.concurrency import run_in_threadpool

from . import VERSION
from .errors import ServiceError
from .images import decode
from .inference import check_pixels, detect_images, tile_limit
from .tensors import Tensor, bad

INPUTS = [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]},
          {"name": "PIXELS", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
OUTPUTS = [{"name": "BOXES", "datatype": "FP32", "shape": [-1, 4]},
           {"name": "SCORES", "datatype": "FP32", "shape": [-1]},
           {"name": "CLASS_IDS", "datatype": "INT64", "shape": [-1]},
           {"name": "CLASS_NAMES", "datatype": "BYTES", "shape": [-1]},
           {"name": "NUM_DETECTIONS", "datatype": "INT32", "shape": [-1]}]
EXTENSIONS = ["binary_tensor_data", "model_repository", "parameters"]
DEFAULTS = {"score_threshold": 0.3, "max_detections": 300}


def server_metadata() -> Dict[str, Any]:
    return {"name": "dcnserve", "version": VERSION, "extensions": EXTENSIONS}


def parse_version(text: Optional[str]) -> Optional[int]:
    """A version from a path or request ("" or None: the newest)."""
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise bad(f"model version {text!r} is not a positive integer")
    return int(text)


def model_metadata(registry, name: str, version: Optional[int]) -> Dict[str, Any]:
    served = registry.resolve(name, version)
    versions = sorted(registry.models[name].versions) if version is None else [version]
    return {"name": served.name, "versions": [str(v) for v in versions],
            "platform": f"dcnserve_{served.backend.name}", "inputs": INPUTS, "outputs": OUTPUTS}


def read_parameters(parameters: Dict[str, Any]) -> Tuple[float, int]:
    values = {**DEFAULTS, **{k: v for k, v in parameters.items() if k in DEFAULTS}}
    try:
        threshold, count = float(values["score_threshold"]), int(values["max_detections"])
    except (TypeError, ValueError):
        raise bad("score_threshold must be a number and max_detections an integer") from None
    if not 0.0 <= threshold <= 1.0 or not 1 <= count <= 5000:
        raise bad("score_threshold must lie in [0, 1] and max_detections in [1, 5000]")
    return threshold, count


def json_image_bytes(element: bytes) -> bytes:
    """IMAGE elements in JSON are base64 strings (JSON cannot carry raw bytes)."""
    try:
        return base64.b64decode(element, validate=True)
    except (binascii.Error, ValueError):
        raise bad("input 'IMAGE' in JSON must be base64 (or send it as binary data)") from None


async def decode_inputs(inputs: List[Tensor], chosen, settings) -> Tuple[List[np.ndarray], bool]:
    """The request's images ([H, W, 3] uint8) and whether it was a batch."""
    if len(inputs) != 1 or inputs[0].name not in ("IMAGE", "PIXELS"):
        raise bad("send exactly one input: IMAGE (BYTES, encoded images) or PIXELS (UINT8 "
                  f"[H, W, 3] or [B, H, W, 3]); got {[t.name for t in inputs]}")
    tensor = inputs[0]
    expected = "BYTES" if tensor.name == "IMAGE" else "UINT8"
    if tensor.datatype != expected:
        raise bad(f"input {tensor.name!r} must be {expected}, not {tensor.datatype}")
    if tensor.name == "IMAGE":
        elements = list(tensor.data.reshape(-1))
        if not elements:
            raise bad("input 'IMAGE' holds no image")
        check = tile_limit(chosen.backend, settings.max_tiles)
        images = [await run_in_threadpool(decode, data, settings.max_image_pixels, check)
                  for data in elements]
        return images, len(tensor.shape) > 1 or len(elements) > 1
    if len(tensor.shape) not in (3, 4) or tensor.shape[-1] != 3:
        raise bad(f"input 'PIXELS' must be [H, W, 3] or [B, H, W, 3], not {tensor.shape}")
    batch = tensor.data if len(tensor.shape) == 4 else tensor.data[None]
    images = [np.ascontiguousarray(image, np.uint8) for image in batch]
    if not images:
        raise bad("input 'PIXELS' holds no image")
    for image in images:
        check_pixels(image, settings, chosen.backend)
    return images, len(tensor.shape) == 4


def output_tensors(results, classes: List[str], batched: bool) -> List[Tensor]:
    names = np.array([c.encode() for c in classes] or [b""], np.object_)

    def label_names(labels):
        out = np.empty(len(labels), np.object_)
        out[:] = [names[i - 1] if 0 < i <= len(classes) else str(i).encode()
                  for i in labels.tolist()]
        return out

    count = np.array([len(r["scores"]) for r in results], np.int32)
    width = int(count.max(initial=0))

    def column(key, fill, dtype, tail=()):
        padded = np.full((len(results), width) + tail, fill, dtype)
        for i, r in enumerate(results):
            values = label_names(r["labels"]) if key == "names" else r[key]
            padded[i, :len(values)] = values
        return padded if batched else padded[0]

    tensors = [("BOXES", "FP32", column("boxes", 0, np.float32, (4,))),
               ("SCORES", "FP32", column("scores", 0, np.float32)),
               ("CLASS_IDS", "INT64", column("labels", 0, np.int64)),
               ("CLASS_NAMES", "BYTES", column("names", b"", np.object_)),
               ("NUM_DETECTIONS", "INT32", count)]
    return [Tensor(name, datatype, list(data.shape), data) for name, datatype, data in tensors]


async def infer(state, name: str, version: Optional[int], inputs: List[Tensor],
                parameters: Dict[str, Any], started: float, disconnected,
                requested: Optional[List[str]] = None):
    """Runs one protocol request through /detect's path: (served instance, output tensors)."""
    threshold, count = read_parameters(parameters)
    batched = []

    async def decode_request(chosen):
        images, is_batch = await decode_inputs(inputs, chosen, state.settings)
        batched.append(is_batch)
        return images

    served, _, results = await detect_images(state, name, version, decode_request, threshold,
                                             count, started, disconnected)
    outputs = output_tensors(results, served.backend.classes, batched[0])
    if requested:
        known = {t.name: t for t in outputs}
        unknown = [n for n in requested if n not in known]
        if unknown:
            raise ServiceError(400, f"unknown outputs {unknown}; the model has "
                                    f"{', '.join(known)}")
        outputs = [known[n] for n in requested]
    return served, outputs
