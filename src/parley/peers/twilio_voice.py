"""A local HTTP server speaking the Twilio Voice API, with signed call callbacks.

The REST side, as Twilio answers it (basic auth, 401/20003; form validation):

- ``POST /2010-04-01/Accounts/{sid}/Calls.json`` -- To (E.164, ``client:id`` or
  ``sip:...``; 21201 missing, 21211 invalid), From (21213 missing, 21212 invalid), Twiml
  or Url (21205 missing; 12100 unparseable TwiML); 201 with ``sid`` "CA" + 32 hex.
- ``POST .../Calls/{CallSid}.json`` -- ``Status=completed|canceled`` hangs up; new
  ``Twiml`` takes the leg out of its conference and runs (21220 when not in progress).
- ``POST .../Conferences/{ConfSid}/Participants/{CallSid}.json`` -- ``Muted``.
- ``GET .../Calls/{CallSid}.json``.

Each created call progresses by itself: ``initiated`` -> ``ringing`` -> answered
(``in-progress``) -- or ``busy`` / ``no-answer`` / ``failed`` for numbers listed in
``outcomes`` (``"hold"`` keeps it ringing until ``answer()``). An answered call runs its
TwiML: ``<Dial><Conference>`` joins a conference (start/join/leave/end callbacks to the
element's statusCallback; ``record`` posts a recording callback when the conference
ends), ``<Play digits>`` is recorded in ``call.digits``, ``<Say>`` in ``call.said``,
``<Record>`` takes a voicemail (a recording callback), ``<Hangup/>`` ends the call. The
remote party hangs up with ``hangup(sid)``. Every callback is signed exactly as Twilio
signs (X-Twilio-Signature, checked in tests with the official ``RequestValidator``), and
one call's callbacks are posted in order. ``place_inbound()`` rings our voice webhook
like a borrower calling our number and runs the TwiML it answers.

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
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import orjson
from aiohttp import web

from parley.channels.twilio.signature import compute_signature
from parley.peers.background import Peer
from parley.peers.twilio_api import API_VERSION, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

log = logging.getLogger(__name__)

_E164 = re.compile(r"\+[1-9]\d{6,14}\Z")
_ENDPOINT = re.compile(r"\+[1-9]\d{6,14}\Z|client:[A-Za-z0-9_.\-]{1,121}\Z|sip:\S+@\S+\Z")
_TERMINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


@dataclass(slots=True)
class PeerCall:
    sid: str
    account_sid: str
    to: str
    from_: str
    direction: str  # outbound-api | inbound
    twiml: str
    status_callback: str | None
    status_events: frozenset[str]
    status: str = "queued"
    sequence: int = 0
    conference: str | None = None  # the name of the conference the leg is in
    digits: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    answered_at: datetime | None = None
    form: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PeerConference:
    sid: str
    name: str
    account_sid: str
    status_callback: str | None = None
    status_events: frozenset[str] = frozenset()
    record_callback: str | None = None
    participants: dict[str, bool] = field(default_factory=dict)  # CallSid -> muted
    started_at: datetime | None = None
    sequence: int = 0
    ended: bool = False


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
        self.outcomes = dict(outcomes or {})  # To -> answered | busy | no-answer | failed | hold
        self.answered_by = dict(answered_by or {})  # To -> AnsweredBy (human, machine_start)
        self.calls: dict[str, PeerCall] = {}
        self.conferences: dict[str, PeerConference] = {}
        self.requests: list[PeerRequest] = []
        self.callbacks: list[tuple[str, dict[str, str], int]] = []  # (url, params, status)
        self._script: list[tuple[int, int, str]] = []
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._order: dict[str, asyncio.Lock] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

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
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail_next(self, status: int, code: int, message: str) -> None:
        """Answer the next create request with `status` and Twilio error `code`."""
        self._script.append((status, code, message))

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
        to, from_ = form.get("To", ""), form.get("From", "")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not _ENDPOINT.match(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not _E164.match(from_):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        twiml = form.get("Twiml", "")
        if not twiml:
            return _error(400, 21205, "Url parameter is required")
        try:
            _parse(twiml)
        except ET.ParseError:
            return _error(400, 12100, "Document parse failure")
        events = frozenset(form.get("StatusCallbackEvent", ["completed"])) | {"completed"}
        call = PeerCall(
            sid="CA" + uuid.uuid4().hex,
            account_sid=request.match_info["account_sid"],
            to=to,
            from_=from_,
            direction="outbound-api",
            twiml=twiml,
            status_callback=form.get("StatusCallback"),
            status_events=events,
            form=form,
        )
        self.calls[call.sid] = call
        self._spawn(self._progress(call))
        return _json(201, self._resource(call))

    async def _fetch(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        call = self.calls.get(request.match_info["sid"])
        if call is None or call.account_sid != request.match_info["account_sid"]:
            return _error(404, 20404, "The requested resource was not found")
        return _json(200, self._resource(call))

    async def _update(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        form = await self._form(request)
        call = self.calls.get(request.match_info["sid"])
        if call is None or call.account_sid != request.match_info["account_sid"]:
            return _error(404, 20404, "The requested resource was not found")
        if call.status in _TERMINAL:
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        if form.get("Status") in ("completed", "canceled"):
            await self._end(call, "completed" if call.status == "in-progress" else "canceled")
            return _json(200, self._resource(call))
        twiml = form.get("Twiml")
        if twiml is not None:
            if call.status != "in-progress":
                return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
            try:
                _parse(twiml)
            except ET.ParseError:
                return _error(400, 12100, "Document parse failure")
            call.twiml = twiml
            await self._leave_conference(call)
            self._spawn(self._run_twiml(call))
        return _json(200, self._resource(call))

    async def _participant(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        form = await self._form(request)
        conference = next(
            (c for c in self.conferences.values() if c.sid == request.match_info["conference"]),
            None,
        )
        sid = request.match_info["sid"]
        if conference is None or conference.ended or sid not in conference.participants:
            return _error(404, 20404, "The requested resource was not found")
        if "Muted" in form:
            if form["Muted"] not in ("true", "false"):
                return _error(400, 21502, "Muted must be true or false")
            conference.participants[sid] = form["Muted"] == "true"
        body = {
            "account_sid": conference.account_sid,
            "call_sid": sid,
            "conference_sid": conference.sid,
            "muted": conference.participants[sid],
            "hold": False,
            "status": "connected",
        }
        return _json(200, body)

    def _resource(self, call: PeerCall) -> dict[str, Any]:
        return {
            "account_sid": call.account_sid,
            "api_version": API_VERSION,
            "direction": call.direction,
            "from": call.from_,
            "sid": call.sid,
            "status": call.status,
            "to": call.to,
            "uri": f"/2010-04-01/Accounts/{call.account_sid}/Calls/{call.sid}.json",
        }

    # -- the call's progress ---------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _progress(self, call: PeerCall) -> None:
        await self._set_status(call, "initiated")
        await self._set_status(call, "ringing")
        outcome = self.outcomes.get(call.to, "answered")
        if outcome == "hold":
            return
        if outcome == "answered":
            await self.answer(call.sid)
        else:
            await self._end(call, outcome)

    async def answer(self, sid: str) -> None:
        """The called party picks up: the call is in progress and runs its TwiML."""
        call = self.calls[sid]
        if call.status in _TERMINAL or call.status == "in-progress":
            return
        call.answered_at = datetime.now(UTC)
        await self._set_status(call, "in-progress")
        await self._run_twiml(call)

    async def hangup(self, sid: str) -> None:
        """The called party hangs up."""
        call = self.calls[sid]
        if call.status not in _TERMINAL:
            await self._end(call, "completed" if call.status == "in-progress" else "canceled")

    async def _end(self, call: PeerCall, status: str) -> None:
        await self._leave_conference(call)
        await self._set_status(call, status)

    async def _run_twiml(self, call: PeerCall) -> None:
        root = _parse(call.twiml)
        for verb in root:
            if call.status in _TERMINAL:
                return
            if verb.tag == "Play" and verb.get("digits"):
                call.digits.append(verb.get("digits", ""))
            elif verb.tag == "Say":
                call.said.append(verb.text or "")
            elif verb.tag == "Dial":
                conference = verb.find("Conference")
                if conference is not None:
                    await self._join_conference(call, conference)
                    return  # in the conference until someone hangs up or redirects
            elif verb.tag == "Record":
                await self._voicemail(call, verb)
            elif verb.tag == "Hangup":
                await self._end(call, "completed")
                return

    async def _join_conference(self, call: PeerCall, element: ET.Element) -> None:
        name = (element.text or "").strip()
        conference = self.conferences.get(name)
        if conference is None or conference.ended:
            conference = PeerConference(
                sid="CF" + uuid.uuid4().hex,
                name=name,
                account_sid=call.account_sid,
                status_callback=element.get("statusCallback"),
                status_events=frozenset((element.get("statusCallbackEvent") or "").split()),
                record_callback=(
                    element.get("recordingStatusCallback")
                    if element.get("record") in ("record-from-start", "true")
                    else None
                ),
                started_at=datetime.now(UTC),
            )
            self.conferences[name] = conference
            await self._conference_event(conference, "conference-start", None, "start")
        if conference.record_callback is None and element.get("record") in (
            "record-from-start",
            "true",
        ):
            # Recording starts with the first participant who asks for it.
            conference.record_callback = element.get("recordingStatusCallback")
        conference.participants[call.sid] = element.get("muted") == "true"
        call.conference = name
        await self._conference_event(conference, "participant-join", call.sid, "join")

    async def _leave_conference(self, call: PeerCall) -> None:
        if call.conference is None:
            return
        conference = self.conferences[call.conference]
        call.conference = None
        conference.participants.pop(call.sid, None)
        await self._conference_event(conference, "participant-leave", call.sid, "leave")
        if not conference.participants and not conference.ended:
            conference.ended = True
            await self._conference_event(conference, "conference-end", None, "end")
            if conference.record_callback:
                await self._recording(
                    conference.record_callback,
                    conference.account_sid,
                    {
                        "ConferenceSid": conference.sid,
                        "RecordingSource": "StartConferenceRecordingAPI",
                        "RecordingDuration": str(_seconds_since(conference.started_at)),
                    },
                )

    async def _voicemail(self, call: PeerCall, element: ET.Element) -> None:
        callback = element.get("recordingStatusCallback")
        if callback:
            await self._recording(
                callback,
                call.account_sid,
                {
                    "CallSid": call.sid,
                    "RecordingSource": "RecordVerb",
                    "RecordingDuration": "7",
                },
            )

    async def _recording(self, url: str, account_sid: str, extra: dict[str, str]) -> None:
        sid = "RE" + uuid.uuid4().hex
        params = {
            "AccountSid": account_sid,
            "RecordingSid": sid,
            "RecordingUrl": f"{self.base_url}/2010-04-01/Accounts/{account_sid}/Recordings/{sid}",
            "RecordingStatus": "completed",
            "RecordingChannels": "1",
            "RecordingStartTime": format_datetime(datetime.now(UTC), usegmt=True),
            **extra,
        }
        self._queue(url, params, account_sid, key=sid)

    async def _conference_event(
        self, conference: PeerConference, event: str, call_sid: str | None, short: str
    ) -> None:
        if not conference.status_callback or short not in conference.status_events:
            return
        conference.sequence += 1
        params = {
            "AccountSid": conference.account_sid,
            "ConferenceSid": conference.sid,
            "FriendlyName": conference.name,
            "StatusCallbackEvent": event,
            "SequenceNumber": str(conference.sequence),
            "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
        }
        if call_sid is not None:
            params |= {
                "CallSid": call_sid,
                "Muted": "true" if conference.participants.get(call_sid) else "false",
                "Hold": "false",
            }
        self._queue(conference.status_callback, params, conference.account_sid, key=conference.sid)

    async def _set_status(self, call: PeerCall, status: str) -> None:
        call.status = status
        event = "answered" if status == "in-progress" else status
        if event in _TERMINAL:
            event = "completed"  # Twilio reports every final status to the completed event
        if not call.status_callback or event not in call.status_events:
            return
        call.sequence += 1
        params = {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "Direction": call.direction,
            "From": call.from_,
            "To": call.to,
            "SequenceNumber": str(call.sequence - 1),
            "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
        }
        if status == "in-progress" and call.to in self.answered_by:
            params["AnsweredBy"] = self.answered_by[call.to]
        if status in _TERMINAL:
            duration = _seconds_since(call.answered_at) if call.answered_at else 0
            params |= {"CallDuration": str(duration), "Duration": str((duration + 59) // 60)}
        self._queue(call.status_callback, params, call.account_sid, key=call.sid)

    # -- posting callbacks -----------------------------------------------------------

    def _queue(self, url: str, params: dict[str, str], account_sid: str, *, key: str) -> None:
        """Post in the background, in order per `key` (asyncio.Lock wakes waiters FIFO)."""
        lock = self._order.setdefault(key, asyncio.Lock())

        async def post() -> None:
            async with lock:
                await self.post_signed(url, params, account_sid)

        self._spawn(post())

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
    ) -> PeerCall:
        """A borrower calls our number: ring the voice webhook `url`, run its TwiML."""
        call = PeerCall(
            sid="CA" + uuid.uuid4().hex,
            account_sid=account_sid,
            to=to,
            from_=from_,
            direction="inbound",
            twiml="",
            status_callback=status_callback,
            status_events=frozenset({"completed"}),
            status="ringing",
        )
        self.calls[call.sid] = call
        params = {
            "AccountSid": account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": from_,
            "To": to,
            "Caller": from_,
            "Called": to,
        }
        status, payload = await self.post_signed(url, params, account_sid)
        if status != 200:
            call.status = "failed"
            return call
        call.twiml = payload.decode("utf-8")
        call.answered_at = datetime.now(UTC)
        call.status = "in-progress"
        await self._run_twiml(call)
        return call


def _parse(twiml: str) -> ET.Element:
    # A test peer: the TwiML comes from the Parley under test (no defusedxml dependency).
    return ET.fromstring(twiml)  # noqa: S314


def _seconds_since(start: datetime | None) -> int:
    if start is None:
        return 0
    return max(1, round((datetime.now(UTC) - start).total_seconds()))


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
