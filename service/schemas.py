"""Request/response models (they are the OpenAPI description at /docs)."""
from typing import List, Literal, Optional

from pydantic import BaseModel, Field


class Error(BaseModel):
    detail: str = Field(description="what was wrong, in words")


class Detection(BaseModel):
    box: List[float] = Field(min_length=4, max_length=4,
                             description="[x1, y1, x2, y2] in original image pixels")
    score: float = Field(ge=0, le=1)
    label: str = Field(description="class name")
    class_id: int = Field(description="class index (1-based; 0 is background)")


class Timing(BaseModel):
    queue: float = Field(description="ms waiting for a batch")
    inference: float = Field(description="ms of the batch's backend call")
    total: float = Field(description="ms from request to response")


class DetectResponse(BaseModel):
    id: str = Field(description="use with GET /offsets/{id}")
    model: str
    version: int = Field(description="the model version that answered")
    backend: str
    width: int
    height: int
    detections: List[Detection]
    timing_ms: Timing


class OffsetLayer(BaseModel):
    index: int = Field(description="0 is the top (last) deformable layer")
    layer: str = Field(description="module name in the detector")
    points: List[List[float]] = Field(description="[n, 2] (x, y) sampling locations in image "
                                                  "pixels; n = 9, 81, 729, ... down the stack")
    weights: List[float] = Field(description="[n] product of modulation masks along each path")


class OffsetsResponse(BaseModel):
    id: str
    x: float
    y: float
    width: int
    height: int
    layers: List[OffsetLayer]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    model: str
    backend: str
    device: str
    max_batch_size: int
    error: Optional[str] = None


class ModelVersionInfo(BaseModel):
    version: int
    state: str = Field(description="READY, LOADING, UNLOADING or UNAVAILABLE")
    reason: str = Field("", description="why it is not ready")
    classes: List[str] = Field([], description="class names (class_id 1 is the first)")
    backend: Optional[str] = Field(None, description="runtime serving it")
    device: Optional[str] = None


class ModelInfo(BaseModel):
    name: str
    default: bool = Field(description="served by /detect without ?model=")
    versions: List[ModelVersionInfo]


class ModelList(BaseModel):
    models: List[ModelInfo]
