"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` (the published
stubs of tritonclient.grpc) on `grpc_port`, served by grpc.aio on the app's own event loop, so a
call takes the same path as POST /detect (service.inference): the same scheduler, limits,
deadline and keys. Keys come as `authorization: Bearer KEY` metadata; a refusal is the status
code for /detect's HTTP status (404 NOT_FOUND, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, ...).
"""
import functools
import logging
import time

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from .errors import CLIENT_GONE, ServiceError
from .inference_protocol import infer, model_metadata, parse_version, server_metadata
from .tensors import from_json, from_raw, to_raw
from .watchdog import not_ready

log = logging.getLogger("dcnserve")

CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
         413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
         422: grpc.StatusCode.INVALID_ARGUMENT, CLIENT_GONE: grpc.StatusCode.CANCELLED,
         503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}


def rpc(access: str):
    """Wraps a method: checks the key (`access`: "open", "inference" or "admin"), turns a
    ServiceError into its status code and counts the call."""
    def wrap(method):
        @functools.wraps(method)
        async def handler(self, request, context):
            code = grpc.StatusCode.OK
            try:
                if access != "open":
                    self.authorize(context, admin=access == "admin")
                return await method(self, request, context)
            except ServiceError as e:
                code = CODES.get(e.status, grpc.StatusCode.INTERNAL)
                await context.abort(code, e.detail)
            except Exception:
                log.exception("gRPC %s failed", method.__name__)
                code = grpc.StatusCode.INTERNAL
                await context.abort(code, "internal error")
            finally:
                self.state.metrics.grpc_requests.labels(method.__name__, code.name).inc()
        return handler
    return wrap


def _parameter(value):
    choice = value.WhichOneof("parameter_choice")
    return getattr(value, choice) if choice else None


def _tensors(request):
    tensors = []
    for index, entry in enumerate(request.inputs):
        shape = list(entry.shape)
        if index < len(request.raw_input_contents):
            tensors.append(from_raw(entry.name, entry.datatype, shape,
                                    request.raw_input_contents[index]))
        else:
            contents = entry.contents
            data = (list(contents.bytes_contents) if entry.datatype == "BYTES"
                    else list(contents.uint_contents) or list(contents.int_contents)
                    or list(contents.int64_contents) or list(contents.uint64_contents)
                    or list(contents.fp32_contents) or list(contents.fp64_contents))
            tensors.append(from_json(entry.name, entry.datatype, shape, data))
    return tensors


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, state) -> None:
        self.state = state

    def authorize(self, context, admin: bool) -> None:
        metadata = dict(context.invocation_metadata() or ())
        self.state.keys.authorize(metadata.get("authorization"), admin=admin)

    @rpc("open")
    async def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    @rpc("open")
    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=not_ready(self.state) is None)

    @rpc("open")
    async def ModelReady(self, request, context):
        try:
            self.state.registry.resolve(request.name, parse_version(request.version))
        except ServiceError:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=True)

    @rpc("inference")
    async def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(**server_metadata())

    @rpc("inference")
    async def ModelMetadata(self, request, context):
        meta = model_metadata(self.state.registry, request.name, parse_version(request.version))
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]])

    @rpc("inference")
    async def ModelInfer(self, request, context):
        started = time.perf_counter()
        parameters = {k: _parameter(v) for k, v in request.parameters.items()}

        async def gone() -> bool:
            return context.cancelled()

        served, outputs = await infer(
            self.state, request.model_name, parse_version(request.model_version),
            _tensors(request), parameters, started, gone,
            [o.name for o in request.outputs] or None)
        return service_pb2.ModelInferResponse(
            model_name=served.name, model_version=str(served.version), id=request.id,
            outputs=[service_pb2.ModelInferResponse.InferOutputTensor(
                name=t.name, datatype=t.datatype, shape=t.shape) for t in outputs],
            raw_output_contents=[to_raw(t) for t in outputs])

    @rpc("admin")
    async def RepositoryIndex(self, request, context):
        rows = self.state.registry.index()
        if request.ready:
            rows = [row for row in rows if row["state"] == "READY"]
        index = service_pb2.RepositoryIndexResponse.ModelIndex
        return service_pb2.RepositoryIndexResponse(models=[index(**row) for row in rows])

    @rpc("admin")
    async def RepositoryModelLoad(self, request, context):
        await self.state.registry.load(request.model_name)
        return service_pb2.RepositoryModelLoadResponse()

    @rpc("admin")
    async def RepositoryModelUnload(self, request, context):
        await self.state.registry.unload(request.model_name)
        return service_pb2.RepositoryModelUnloadResponse()


async def start_grpc_server(state, settings) -> grpc.aio.Server:
    """Starts serving on settings.host:grpc_port; the port bound is `state.grpc_port`."""
    limit = settings.max_upload_bytes + 2**16  # the request metadata beside the image
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", 64 * 2**20)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(state), server)
    address = f"{settings.host}:{settings.grpc_port}"
    port = server.add_insecure_port(address)
    if not port:
        raise RuntimeError(f"cannot listen for gRPC on {address}")
    await server.start()
    state.grpc_port = port
    log.info("Open Inference Protocol over gRPC on %s", address)
    return server
