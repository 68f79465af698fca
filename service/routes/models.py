"""GET /models: the models served (and on disk), their versions, classes, backend and state."""
from fastapi import APIRouter, Depends

from ..dependencies import Registry, require_key
from ..schemas import ModelInfo, ModelList, ModelVersionInfo

router = APIRouter(tags=["models"], dependencies=[Depends(require_key)])


@router.get("/models", response_model=ModelList, summary="served models and their versions")
async def models(registry: Registry) -> ModelList:
    by_name = {}
    for row in registry.index():
        info = by_name.setdefault(row["name"], ModelInfo(
            name=row["name"], default=row["name"] == registry.default_name, versions=[]))
        if not row["version"]:
            continue
        served = registry.models.get(row["name"])
        mv = served.versions.get(int(row["version"])) if served else None
        info.versions.append(ModelVersionInfo(
            version=int(row["version"]), state=row["state"], reason=row["reason"],
            classes=list(mv.backend.classes) if mv else [],
            backend=mv.backend.name if mv else None, device=mv.backend.device if mv else None))
    return ModelList(models=list(by_name.values()))
