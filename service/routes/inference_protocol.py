"""The Open Inference Protocol v2 over REST."""
from fastapi import APIRouter

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
