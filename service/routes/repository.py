"""Model management on the paths of Triton's model repository extension (admin key):
POST /v2/repository/index, /v2/repository/models/{name}/load and /unload.

`load` on a loaded model reloads it from disk (a new version included): the new instance is
built and warmed beside the old one, then takes over; on failure the old one goes on serving and
the answer says why. Errors are the protocol's `{"error": ...}`.
"""
from typing import List, Optional

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel

from ..dependencies import Registry, require_admin_key

router = APIRouter(prefix="/v2/repository", tags=["model repository"],
                   dependencies=[Depends(require_admin_key)])


class IndexRequest(BaseModel):
    ready: bool = False  # only the models ready for inference


class IndexEntry(BaseModel):
    name: str
    version: str
    state: str
    reason: str


@router.post("/index", response_model=List[IndexEntry], summary="models on disk and served")
async def index(registry: Registry, body: Optional[IndexRequest] = Body(None)):
    rows = registry.index()
    if body is not None and body.ready:
        rows = [row for row in rows if row["state"] == "READY"]
    return rows


@router.post("/models/{name}/load", summary="load, or reload, a model from the repository")
async def load(name: str, registry: Registry) -> dict:
    await registry.load(name)
    return {}


@router.post("/models/{name}/unload", summary="stop serving a model and free its memory")
async def unload(name: str, registry: Registry) -> dict:
    await registry.unload(name)
    return {}
