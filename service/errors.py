"""The service's error type, and every failure as a complete HTTP response on an intact
connection.

Starlette's own last-resort handler sends its 500 and then re-raises, and uvicorn answers a
re-raised error by closing the keep-alive connection without `Connection: close`, so the
client's next request on it fails. This middleware catches first: an unexpected error is a JSON
500 (logged with its traceback); a client that left mid-upload is a 499 (logged at info level,
counted in the metrics, sent to nobody), whatever error the body parser turned that into.
"""
import json
import logging
from typing import Dict, Optional

from starlette.requests import ClientDisconnect

log = logging.getLogger("dcnserve")

CLIENT_GONE = 499


class ServiceError(Exception):
    """A request the service refuses or cannot finish: `status` is its HTTP status (the gRPC
    server maps it to a status code), `detail` says why in words."""

    def __init__(self, status: int, detail: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def unavailable(detail: str, retry_after: int = 1) -> ServiceError:
    return ServiceError(503, detail, headers={"Retry-After": str(retry_after)})


async def send_json(send, status: int, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ErrorMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"started": False, "body_done": False, "gone": False}

        async def watching_receive():
            message = await receive()
            if message["type"] == "http.disconnect":
                state["gone"] = not state["body_done"]
            elif not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def relabelling_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
                if state["gone"]:  # nobody reads it: say what happened, not what parsing made of it
                    message = {**message, "status": CLIENT_GONE}
            await send(message)

        try:
            await self.app(scope, watching_receive, relabelling_send)
        except ClientDisconnect:
            state["gone"] = True
            if not state["started"]:
                await send_json(relabelling_send, CLIENT_GONE, "client disconnected")
        except Exception:
            if state["started"]:
                raise  # too late for a clean answer; uvicorn closes the connection
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            await send_json(send, 500, "internal error", close=not state["body_done"])
        if state["gone"]:
            log.info("client disconnected during %s %s", scope.get("method"), scope.get("path"))
