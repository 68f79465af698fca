"""Dependencies the routes declare: the key checks and the app's parts, from `app.state` (set
up once by service.app.create_app), never from globals."""
from typing import Annotated

from fastapi import Depends, Request

from .keys import KeyRing
from .registry import ModelRegistry


def _check(request: Request, admin: bool = False, browser: bool = False) -> None:
    keys: KeyRing = request.app.state.keys
    keys.authorize(request.headers.get("authorization"), admin=admin, browser=browser)


def require_key(request: Request) -> None:
    """An inference (or admin) key, when inference keys are configured."""
    _check(request)


def require_page_key(request: Request) -> None:
    """As require_key, with a challenge that makes a browser ask for the key."""
    _check(request, browser=True)


def require_admin_key(request: Request) -> None:
    """An admin key; 403 when none is configured (management off)."""
    _check(request, admin=True)


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


Registry = Annotated[ModelRegistry, Depends(get_registry)]
