"""A local HTTP server speaking the Twilio Voice API, with signed call callbacks.

The REST side, as Twilio answers it (basic auth, 401/20003; form validation):

- ``POST /2010-04-01/Accounts/{sid}/Calls.json`` -- To (E.164, ``client:id`` or
  ``sip:...``; 21201 missing, 21211 invalid), From (21213 missing, 21212 invalid), Twiml
  or Url (21205 missing; 12100 unparseable TwiML); 201 with ``sid`` "CA" + 32 hex.
- ``POST .../Calls/{CallSid}.json`` -- ``Status=completed|canceled`` hangs up; new
  ``Twiml`` takes the leg out of its conference and runs (21220 when not in progress).
- ``POST .../Conferences/{ConfSid}/Participants/{CallSid}.json`` -- ``Muted``.
- ``GET .../Calls/{CallSid}.json``.

Calls and conferences run on the simulated network of ``parley.voice.network`` (shared
with the sandbox provider's voice channel): each created call progresses by itself --
``initiated`` -> ``ringing`` -> answered, or ``busy`` / ``no-answer`` / ``failed`` for
numbers listed in ``outcomes`` (``"hold"`` keeps it ringing until ``answer()``) -- and
runs its TwiML (conferences, ``<Play digits>``, ``<Say>``, ``<Record>``, ``<Hangup/>``).
The remote party hangs up with ``hangup(sid)``. The peer signs every callback exactly as
Twilio signs (X-Twilio-Signature, checked in tests with the official
``RequestValidator``). ``place_inbound()`` rings our voice webhook like a borrower
calling our number and runs the TwiML it answers.

    async with TwilioVoicePeer() as peer:   # peer.base_url -> "http://127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import orjson
from aiohttp import web

from parley.channels.twilio.signature import compute_signature
from parley.peers.background import Peer
from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from parley.voice.network import (
    NetworkCall,
    NetworkConference,
    NetworkError,
    PhoneNetwork,
)

log = logging.getLogger(__name__)

PeerCall = NetworkCall
PeerConference = NetworkConference


@dataclass(frozen=True, slots=True)
class PeerRequest:
    method: str
    path: str
    form: dict[str, Any]


class TwilioVoicePeer(Peer):
    """A Twilio Voice API look-alike on `host:port` (port 0 picks a free one)."""

    thread_name = "twilio-voice-peer"

    def __init__(
        self,
        *,
        accounts: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        outcomes: Mapping[str, str] | None = None,
        answered_by: Mapping[str, str] | None = None,
    ) -> None:
        self.accounts = dict(accounts or {DEFAULT_ACCOUNT_SID: DEFAULT_AUTH_TOKEN})
        self.host = host
        self.port = port
        # Calls and conferences run on the simulated network; the peer is its REST API.
        self.network = PhoneNetwork(
            self.post_signed,
            outcomes=outcomes,
            answered_by=answered_by,
            recording_url=lambda account_sid, sid: (
                f"{self.base_url}/2010-04-01/Accounts/{account_sid}/Recordings/{sid}"
            ),
        )
        self.requests: list[PeerRequest] = []
        self.callbacks: list[tuple[str, dict[str, str], int]] = []  # (url, params, status)
        self._script: list[tuple[int, int, str]] = []
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def calls(self) -> dict[str, NetworkCall]:
        return self.network.calls

    @property
    def conferences(self) -> dict[str, NetworkConference]:
        return self.network.conferences

    @property
    def outcomes(self) -> dict[str, str]:
        """To -> answered | machine | busy | no-answer | failed | hold."""
        return self.network.outcomes

    @property
    def answered_by(self) -> dict[str, str]:
        """To -> AnsweredBy (human, machine_start)."""
        return self.network.answered_by

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> TwilioVoicePeer:
        app = web.Application()
        prefix = "/2010-04-01/Accounts/{account_sid}"
        app.router.add_post(prefix + "/Calls.json", self._create)
        app.router.add_post(prefix + "/Calls/{sid}.json", self._update)
        app.router.add_get(prefix + "/Calls/{sid}.json", self._fetch)
        app.router.add_post(
            prefix + "/Conferences/{conference}/Participants/{sid}.json", self._participant
        )
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        await self.network.close()
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(self, status: int, code: int, message: str) -> None:
        """Answer the next create request with `status` and Twilio error `code`."""
        self._script.append((status, code, message))

    async def answer(self, sid: str) -> None:
        """The called party picks up: the call is in progress and runs its TwiML."""
        await self.network.answer(sid)

    async def hangup(self, sid: str) -> None:
        """The called party hangs up."""
        await self.network.hangup(sid)

    # -- the REST API ----------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        account_sid = request.match_info["account_sid"]
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == account_sid and self.accounts.get(user) == password

    async def _form(self, request: web.Request) -> dict[str, Any]:
        pairs = parse_qsl(await request.text(), keep_blank_values=True)
        form: dict[str, Any] = {}
        for name, value in pairs:
            if name == "StatusCallbackEvent":
                form.setdefault(name, []).append(value)
            else:
                form[name] = value
        self.requests.append(PeerRequest(request.method, request.path, form))
        return form

    async def _create(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        form = await self._form(request)
        if self._script:
            status, code, message = self._script.pop(0)
            return _error(status, code, message)
        try:
            call = self.network.dial(
                request.match_info["account_sid"],
                to=form.get("To", ""),
                from_=form.get("From", ""),
                twiml=form.get("Twiml", ""),
                status_callback=form.get("StatusCallback"),
                status_events=frozenset(form.get("StatusCallbackEvent", ["completed"])),
                form=form,
            )
        except NetworkError as exc:
            return _error(exc.status, exc.code, exc.message)
        return _json(201, self.network.resource(call))

    async def _fetch(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        try:
            call = self.network.find(request.match_info["account_sid"], request.match_info["sid"])
        except NetworkError as exc:
            return _error(exc.status, exc.code, exc.message)
        return _json(200, self.network.resource(call))

    async def _update(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        form = await self._form(request)
        try:
            call = await self.network.update(
                request.match_info["account_sid"],
                request.match_info["sid"],
                status=form.get("Status"),
                twiml=form.get("Twiml"),
            )
        except NetworkError as exc:
            return _error(exc.status, exc.code, exc.message)
        return _json(200, self.network.resource(call))

    async def _participant(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        form = await self._form(request)
        try:
            body = self.network.participant(
                request.match_info["account_sid"],
                request.match_info["conference"],
                request.match_info["sid"],
                muted=form.get("Muted"),
            )
        except NetworkError as exc:
            return _error(exc.status, exc.code, exc.message)
        return _json(200, body)

    # -- posting callbacks -----------------------------------------------------------

    def signed_request(
        self, url: str, params: Mapping[str, str], account_sid: str = DEFAULT_ACCOUNT_SID
    ) -> tuple[dict[str, str], bytes]:
        """Headers and form body of a webhook POST to `url`, signed as Twilio signs."""
        body = urlencode(list(params.items())).encode()
        token = hashlib.sha256((url + "|" + body.decode()).encode()).hexdigest()[:32]
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": compute_signature(self.accounts[account_sid], url, params),
            "I-Twilio-Idempotency-Token": token,
            "User-Agent": "TwilioProxy/1.1",
        }
        return headers, body

    async def post_signed(
        self, url: str, params: Mapping[str, str], account_sid: str = DEFAULT_ACCOUNT_SID
    ) -> tuple[int, bytes]:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        headers, body = self.signed_request(url, params, account_sid)
        try:
            async with self._client.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("voice callback to %s failed: %r", url, exc)
            status, payload = 0, b""
        self.callbacks.append((url, dict(params), status))
        return status, payload

    async def place_inbound(
        self,
        url: str,
        *,
        from_: str,
        to: str,
        status_callback: str | None = None,
        account_sid: str = DEFAULT_ACCOUNT_SID,
    ) -> NetworkCall:
        """A borrower calls our number: ring the voice webhook `url`, run its TwiML."""
        return await self.network.place_inbound(
            url, account_sid=account_sid, from_=from_, to=to, status_callback=status_callback
        )


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _error(status: int, code: int, message: str) -> web.Response:
    return _json(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def main() -> None:
    """Run the peer alone, e.g. for the demo: ``python -m parley.peers.twilio_voice``."""
    import argparse

    parser = argparse.ArgumentParser(description="A local Twilio Voice API for Parley demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8931)
    args = parser.parse_args()

    async def serve() -> None:
        async with TwilioVoicePeer(host=args.host, port=args.port) as peer:
            print(
                f"Twilio Voice peer on {peer.base_url} (account {DEFAULT_ACCOUNT_SID}, "
                f"auth token {DEFAULT_AUTH_TOKEN}); every call is answered. Ctrl-C stops it."
            )
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
