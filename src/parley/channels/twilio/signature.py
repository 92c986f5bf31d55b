"""Twilio's webhook signature scheme (X-Twilio-Signature), to sign and to verify.

signature = base64(HMAC-SHA1(auth token, URL + name1 + value1 + name2 + value2 ...))
with POST parameters sorted by name (and a repeated name's values sorted). JSON bodies
are not signed as parameters: Twilio adds `bodySHA256=<hex sha256 of the body>` to the
URL instead, which is then covered by the signature. Twilio is inconsistent about
including the default port in the signed URL, so both forms are accepted -- the official
`twilio.request_validator.RequestValidator` does the same and is our test oracle.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

Params = Mapping[str, str] | Sequence[tuple[str, str]]


def _pairs(params: Params) -> Iterable[tuple[str, str]]:
    return params.items() if isinstance(params, Mapping) else params


def signing_string(url: str, params: Params) -> str:
    values: dict[str, set[str]] = {}
    for name, value in _pairs(params):
        values.setdefault(name, set()).add(value)
    parts = [url]
    for name in sorted(values):
        for value in sorted(values[name]):
            parts.append(name)
            parts.append(value)
    return "".join(parts)


def compute_signature(auth_token: str, url: str, params: Params = ()) -> str:
    mac = hmac.new(
        auth_token.encode("utf-8"), signing_string(url, params).encode("utf-8"), hashlib.sha1
    )
    return base64.b64encode(mac.digest()).decode("ascii")


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def url_variants(url: str) -> tuple[str, ...]:
    """The URL as given, without its port, and with the scheme's default port."""
    parts = urlsplit(url)
    if parts.port is not None:
        netloc_without = parts.netloc.rsplit(":", 1)[0]
        without = urlunsplit(parts._replace(netloc=netloc_without))
        return (url, without) if without != url else (url,)
    default = 443 if parts.scheme == "https" else 80
    with_port = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}"))
    return (url, with_port)


def is_valid(auth_token: str, url: str, params: Params, signature: str | None) -> bool:
    """Whether `signature` is Twilio's for this URL and these POST parameters."""
    if not signature:
        return False
    expected = signature.strip().encode("ascii", "replace")
    valid = False
    for candidate in url_variants(url):
        computed = compute_signature(auth_token, candidate, params).encode("ascii")
        # Evaluate every variant: the time taken must not depend on which one matched.
        valid |= hmac.compare_digest(computed, expected)
    return valid


def is_valid_json(auth_token: str, url: str, body: bytes, signature: str | None) -> bool:
    """A JSON-bodied request: the URL's bodySHA256 must match and the URL must be signed."""
    declared = parse_qs(urlsplit(url).query).get("bodySHA256")
    if not declared:
        return False
    body_ok = hmac.compare_digest(body_sha256(body).encode(), declared[0].lower().encode())
    return is_valid(auth_token, url, (), signature) and body_ok
