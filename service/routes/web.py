"""The web page: static HTML + JS, no build step."""
import os

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from ..dependencies import require_page_key

STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
# With keys on, the page asks the browser for one (HTTP Basic, the key as password); the
# browser then sends it with the page's own requests. /static holds code only, and stays open.
router = APIRouter(include_in_schema=False, dependencies=[Depends(require_page_key)])


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(os.path.join(STATIC, "index.html"), media_type="text/html")
