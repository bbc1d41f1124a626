"""TikTok Shop request signing (Open API 202309+), shared by the client and the simulator.

The signature is a lowercase hex HMAC-SHA256, keyed with the app secret, over
`secret + path + sorted "{key}{value}" query pairs + raw body + secret`.
Values are signed decoded (a page token with `+` or `/` is signed as is and sent
percent-encoded); list values are comma-joined; multipart bodies are never signed.

A key that occurs more than once in a query (`ids=1&ids=2`) is not covered by the platform's
page. orderops never sends one (lists go comma-joined, `ids=1,2`, as the platform's own SDKs
send them) and signs a repeated key's values comma-joined (`ids1,2`); clients generated from the
docs send repeated keys and sign each occurrence (`ids1ids2`), so `repeated="each"` computes that
form and the simulator accepts both.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

# Query parameters that never take part in the signature.
UNSIGNED_PARAMS = frozenset({"sign", "access_token", "x-tts-access-token"})


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def signing_string(
    path: str,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]],
    body: bytes | str = b"",
    content_type: str = "application/json",
    repeated: str = "joined",
) -> str:
    """The string that gets wrapped in the secret and hashed (useful when a signature is disputed)."""
    if repeated not in ("joined", "each"):
        raise ValueError(f"repeated: expected 'joined' or 'each', got {repeated!r}")
    pairs = query.items() if isinstance(query, Mapping) else query
    merged: dict[str, list[str]] = {}
    for key, value in pairs:
        if key in UNSIGNED_PARAMS or value is None:
            continue
        merged.setdefault(key, []).append(_text(value))
    # Sort by code point, which is byte order for UTF-8; a repeated key's values keep their order.
    if repeated == "joined":
        text = path + "".join(f"{key}{','.join(merged[key])}" for key in sorted(merged))
    else:
        text = path + "".join(f"{key}{value}" for key in sorted(merged) for value in merged[key])
    if body and not (content_type or "").lower().startswith("multipart/form-data"):
        text += body.decode("utf-8") if isinstance(body, bytes) else body
    return text


def sign(
    app_secret: str,
    path: str,
    query: Mapping[str, Any] | Iterable[tuple[str, Any]],
    body: bytes | str = b"",
    content_type: str = "application/json",
    repeated: str = "joined",
) -> str:
    """The `sign` query parameter for a request.

    `query` is every query parameter as sent (decoded values); `sign` and `access_token`
    are ignored if present. `body` is the raw body exactly as sent: JSON key order matters.
    """
    wrapped = f"{app_secret}{signing_string(path, query, body, content_type, repeated)}{app_secret}"
    return hmac.new(app_secret.encode("utf-8"), wrapped.encode("utf-8"), hashlib.sha256).hexdigest()
