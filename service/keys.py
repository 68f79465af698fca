"""API keys: inference keys and admin keys, read from a setting (comma-separated, or `@FILE`
with one key a line) and compared in constant time.

A key arrives as `Authorization: Bearer KEY` (REST, and the `authorization` metadata of gRPC), or
as the password of HTTP Basic credentials (what a browser sends after its login prompt for the
web page). An admin key is also an inference key.
"""
import base64
import binascii
import hmac
from typing import List, Optional

from .errors import ServiceError

REALM = 'realm="dcnserve"'


def read_keys(value: str) -> List[str]:
    """Keys from "k1,k2" or "@/path/to/file" (one key a line; blank lines and # comments
    skipped)."""
    value = value.strip()
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        return [line for line in lines if line and not line.startswith("#")]
    return [key.strip() for key in value.split(",") if key.strip()]


def presented_key(authorization: Optional[str]) -> Optional[str]:
    """The key in an Authorization header value (Bearer, or Basic with the key as password)."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _matches(key: str, keys: List[str]) -> bool:
    found = False
    for candidate in keys:  # every key compared, so the time does not say which one matched
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


class KeyRing:
    def __init__(self, api_keys: List[str], admin_keys: List[str]) -> None:
        self.api_keys, self.admin_keys = list(api_keys), list(admin_keys)

    @classmethod
    def from_settings(cls, settings) -> "KeyRing":
        return cls(read_keys(settings.api_keys.get_secret_value()),
                   read_keys(settings.admin_keys.get_secret_value()))

    @property
    def inference_open(self) -> bool:
        """No inference keys: inference needs no key (as without keys at all)."""
        return not self.api_keys

    @property
    def management_enabled(self) -> bool:
        return bool(self.admin_keys)

    def check(self, authorization: Optional[str], admin: bool = False) -> Optional[str]:
        """None when the header grants the access, else why not (for a 401)."""
        if not admin and self.inference_open:
            return None
        key = presented_key(authorization)
        if key is None:
            return "missing key: send Authorization: Bearer <key>"
        allowed = self.admin_keys if admin else self.api_keys + self.admin_keys
        if not _matches(key, allowed):
            return "invalid admin key" if admin else "invalid key"
        return None

    def challenge(self, reason: str, browser: bool = False) -> str:
        """The WWW-Authenticate value for a 401 (Basic too for pages a browser opens)."""
        bearer = f"Bearer {REALM}" + (', error="invalid_token"' if "invalid" in reason else "")
        return f"Basic {REALM}, {bearer}" if browser else bearer

    def authorize(self, authorization: Optional[str], admin: bool = False,
                  browser: bool = False) -> None:
        """Raises the ServiceError for a request without the access: 403 for management
        without admin keys configured, 401 with its WWW-Authenticate challenge."""
        if admin and not self.management_enabled:
            raise ServiceError(403, "model management is off: no admin key is configured "
                                    "(DCN_ADMIN_KEYS)")
        reason = self.check(authorization, admin=admin)
        if reason:
            raise ServiceError(401, reason,
                               headers={"WWW-Authenticate": self.challenge(reason, browser)})
