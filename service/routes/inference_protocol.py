"""The Open Inference Protocol v2 over REST, as Triton and KServe speak it (stock
`tritonclient.http` works): server and model metadata, health and readiness, and infer with
JSON tensors or the binary-tensor extension (`Inference-Header-Content-Length`: the request or
response starts with that many bytes of JSON, then the tensors whose `parameters` give a
`binary_data_size`, in order). Errors are `{"error": ...}` (service.app words them so under
/v2). The health routes are open; the others need an inference key when keys are on.
"""
import json
import time
from typing import Any, Dict, List, Optional

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from ..dependencies import Registry, require_key
from ..inference_protocol import (
    infer,
    json_image_bytes,
    model_metadata,
    parse_version,
    server_metadata,
)
from ..tensors import Tensor, bad, from_json, from_raw, to_json, to_raw
from ..watchdog import not_ready

health_router = APIRouter(prefix="/v2", tags=["open inference protocol"])  # open
router = APIRouter(prefix="/v2", tags=["open inference protocol"],
                   dependencies=[Depends(require_key)])
HEADER_LENGTH = "Inference-Header-Content-Length"


@health_router.get("/health/live", summary="the server is alive")
async def live() -> dict:
    return {}


@health_router.get("/health/ready", summary="the server can take inference requests")
async def ready(request: Request):
    reason = not_ready(request.app.state)
    if reason:
        return JSONResponse({"error": reason}, status_code=503, headers={"Retry-After": "5"})
    return {}


@router.get("", summary="server metadata")
async def metadata() -> dict:
    return server_metadata()


@router.get("/models/{name}", summary="model metadata (newest version)")
@router.get("/models/{name}/versions/{version}", summary="model metadata")
async def model(name: str, registry: Registry, version: Optional[str] = None) -> dict:
    return model_metadata(registry, name, parse_version(version))


@router.get("/models/{name}/ready", summary="the model is ready")
@router.get("/models/{name}/versions/{version}/ready", summary="the model version is ready")
async def model_ready(name: str, registry: Registry, version: Optional[str] = None) -> dict:
    registry.resolve(name, parse_version(version))  # 404 naming the loaded models
    return {}


def parse_request(body: bytes, header_length: Optional[str]):
    """(request JSON, input tensors) of a REST infer body."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise bad(f"{HEADER_LENGTH} {header_length!r} does not fit a {len(body)}-byte body")
        head, binary = body[:int(header_length)], memoryview(body)[int(header_length):]
    else:
        head, binary = body, memoryview(b"")
    try:
        request = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"the request is not JSON: {e}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise bad("the request needs an 'inputs' list")
    inputs, offset = [], 0
    for entry in request["inputs"]:
        try:
            name, datatype, shape = entry["name"], entry["datatype"], list(entry["shape"])
        except (KeyError, TypeError):
            raise bad("each input needs a name, a datatype and a shape") from None
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or offset + size > len(binary):
                raise bad(f"input {name!r}: binary_data_size {size} runs past the body")
            inputs.append(from_raw(name, datatype, shape, bytes(binary[offset:offset + size])))
            offset += size
        elif "data" in entry:
            tensor = from_json(name, datatype, shape, entry["data"])
            if name == "IMAGE" and datatype == "BYTES":
                tensor.data.reshape(-1)[:] = [json_image_bytes(e) for e in tensor.data.flat]
            inputs.append(tensor)
        else:
            raise bad(f"input {name!r} has neither data nor binary_data_size")
    return request, inputs


def encode_response(head: Dict[str, Any], outputs: List[Tensor], binary: Dict[str, bool]):
    chunks = []
    head["outputs"] = []
    for tensor in outputs:
        entry = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if binary.get(tensor.name):
            raw = to_raw(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = to_json(tensor)
        head["outputs"].append(entry)
    text = json.dumps(head, separators=(",", ":")).encode()
    if not chunks:
        return Response(text, media_type="application/json")
    return Response(b"".join([text] + chunks), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(text))})


@router.post("/models/{name}/infer", summary="detect objects (Open Inference Protocol)")
@router.post("/models/{name}/versions/{version}/infer", summary="detect objects with a version")
async def model_infer(name: str, request: Request, version: Optional[str] = None) -> Response:
    started = time.perf_counter()
    body = await request.body()
    parsed, inputs = parse_request(body, request.headers.get(HEADER_LENGTH))
    parameters = parsed.get("parameters") or {}
    requested = parsed.get("outputs") or []
    names = [o.get("name") for o in requested] or None
    binary_default = bool(parameters.get("binary_data_output", False))
    served, outputs = await infer(request.app.state, name, parse_version(version), inputs,
                                  parameters, started, request.is_disconnected, names)
    binary = {t.name: binary_default for t in outputs}
    for entry in requested:
        binary[entry.get("name")] = bool((entry.get("parameters") or {})
                                         .get("binary_data", binary_default))
    head = {"model_name": served.name, "model_version": str(served.version)}
    if parsed.get("id"):
        head["id"] = parsed["id"]
    return encode_response(head, outputs, binary)

