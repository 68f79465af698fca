"""The web page: static HTML + JS, no build step."""
import os

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")
