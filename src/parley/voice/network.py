"""A simulated telephone network that runs TwiML and reports calls as Twilio does.

Two things need one: the Twilio Voice peer (``parley.peers.twilio_voice``: tests talk to
it over Twilio's REST API) and the sandbox provider's voice channel
(``parley.channels.sandbox.voice``: the demo's calls, with no telephony at all). Both
hand it the same TwiML documents Parley gives Twilio (``parley.voice.twiml``) and get
back callbacks in Twilio's vocabulary (``CallSid``, ``CallStatus``, ``ConferenceSid``,
``RecordingSid``, ... with an RFC 2822 ``Timestamp``), which they sign and post their
own way through the ``post`` function they give it.

What happens on the network:

- a dialed leg goes ``initiated`` -> ``ringing`` and, after ``ring_seconds``, answers
  (``in-progress``) -- or ends ``busy`` / ``no-answer`` / ``failed`` for numbers listed in
  ``outcomes`` (``machine``: answered by an answering machine, reported as
  ``AnsweredBy``; ``hold``: rings until ``answer()`` or a hang-up);
- an answered leg runs its TwiML: ``<Dial><Conference>`` joins a conference
  (start/join/leave/end callbacks to the element's statusCallback; ``record`` posts a
  recording callback when the conference ends), ``<Play digits>`` is kept in
  ``call.digits``, ``<Say>`` in ``call.said``, ``<Record>`` takes a voicemail of
  ``voicemail_seconds`` (a recording callback), ``<Hangup/>`` ends the call;
- a phone (an E.164 number, or the caller of an inbound call) hangs up by itself
  ``talk_seconds`` after it answered, when that is set; softphones (``client:``,
  ``sip:``) stay until Parley hangs them up;
- ``hangup(sid)``: the remote party hangs up; ``place_inbound()``: a borrower calls our
  number -- the voice webhook is asked for TwiML, which then runs.

One call's callbacks (and one conference's) are posted in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
E164 = re.compile(r"\+[1-9]\d{6,14}\Z")
ENDPOINT = re.compile(r"\+[1-9]\d{6,14}\Z|client:[A-Za-z0-9_.\-]{1,121}\Z|sip:\S+@\S+\Z")
TERMINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# What a dialed number does when it is called (see `PhoneNetwork.outcomes`).
OUTCOMES = frozenset({"answered", "machine", "busy", "no-answer", "failed", "hold"})
MACHINE = "machine_end_beep"

# (url, form parameters, account) -> (HTTP status, body) of the answer; status 0 when the
# request failed.
Post = Callable[[str, Mapping[str, str], str], Awaitable[tuple[int, bytes]]]
# (account, recording sid) -> where the recording can be fetched (None: nowhere).
RecordingUrl = Callable[[str, str], str | None]


class NetworkError(Exception):
    """A request the network refuses, with Twilio's HTTP status and error code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(slots=True)
class NetworkCall:
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
class NetworkConference:
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


class PhoneNetwork:
    """Calls, conferences and their callbacks; the caller signs and posts (`post`)."""

    def __init__(
        self,
        post: Post,
        *,
        outcomes: Mapping[str, str] | None = None,
        answered_by: Mapping[str, str] | None = None,
        ring_seconds: float = 0.0,
        talk_seconds: float | None = None,
        voicemail_seconds: float = 0.0,
        recording_url: RecordingUrl | None = None,
    ) -> None:
        self.post = post
        self.outcomes = dict(outcomes or {})  # To -> one of OUTCOMES (default answered)
        self.answered_by = dict(answered_by or {})  # To -> AnsweredBy (human, machine_start)
        self.ring_seconds = ring_seconds
        self.talk_seconds = talk_seconds
        self.voicemail_seconds = voicemail_seconds
        self.recording_url = recording_url or (lambda _account, _sid: None)
        self.calls: dict[str, NetworkCall] = {}
        self.conferences: dict[str, NetworkConference] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._posting: set[asyncio.Task[Any]] = set()
        self._order: dict[str, asyncio.Lock] = {}

    # -- requests ------------------------------------------------------------------

    def dial(
        self,
        account_sid: str,
        *,
        to: str,
        from_: str,
        twiml: str,
        status_callback: str | None,
        status_events: frozenset[str] = frozenset({"completed"}),
        form: dict[str, Any] | None = None,
    ) -> NetworkCall:
        """Create an outbound leg (checked as Twilio checks it); it progresses by itself."""
        if not to:
            raise NetworkError(400, 21201, "No 'To' number is specified")
        if not ENDPOINT.match(to):
            raise NetworkError(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            raise NetworkError(400, 21213, "No 'From' number is specified")
        if not E164.match(from_):
            raise NetworkError(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        if not twiml:
            raise NetworkError(400, 21205, "Url parameter is required")
        _checked(twiml)
        call = NetworkCall(
            sid="CA" + uuid.uuid4().hex,
            account_sid=account_sid,
            to=to,
            from_=from_,
            direction="outbound-api",
            twiml=twiml,
            status_callback=status_callback,
            status_events=status_events | {"completed"},
            form=form or {},
        )
        self.calls[call.sid] = call
        self.spawn(self._progress(call))
        return call

    def find(self, account_sid: str, sid: str) -> NetworkCall:
        call = self.calls.get(sid)
        if call is None or call.account_sid != account_sid:
            raise NetworkError(404, 20404, "The requested resource was not found")
        return call

    async def update(
        self, account_sid: str, sid: str, *, status: str | None = None, twiml: str | None = None
    ) -> NetworkCall:
        """Hang a leg up (``completed`` / ``canceled``) or give it new TwiML, which takes
        it out of its conference and runs."""
        call = self.find(account_sid, sid)
        if call.status in TERMINAL:
            raise NetworkError(400, 21220, "Call is not in-progress. Cannot redirect.")
        if status in ("completed", "canceled"):
            await self._end(call, "completed" if call.status == "in-progress" else "canceled")
            return call
        if twiml is not None:
            if call.status != "in-progress":
                raise NetworkError(400, 21220, "Call is not in-progress. Cannot redirect.")
            _checked(twiml)
            call.twiml = twiml
            await self._leave_conference(call)
            self.spawn(self._run_twiml(call))
        return call

    def participant(
        self, account_sid: str, conference_sid: str, sid: str, *, muted: str | None = None
    ) -> dict[str, Any]:
        """A conference participant's resource, muted or unmuted first (``"true"`` /
        ``"false"``) when `muted` is given."""
        conference = next(
            (
                c
                for c in self.conferences.values()
                if c.sid == conference_sid and c.account_sid == account_sid
            ),
            None,
        )
        if conference is None or conference.ended or sid not in conference.participants:
            raise NetworkError(404, 20404, "The requested resource was not found")
        if muted is not None:
            if muted not in ("true", "false"):
                raise NetworkError(400, 21502, "Muted must be true or false")
            conference.participants[sid] = muted == "true"
        return {
            "account_sid": conference.account_sid,
            "call_sid": sid,
            "conference_sid": conference.sid,
            "muted": conference.participants[sid],
            "hold": False,
            "status": "connected",
        }

    def resource(self, call: NetworkCall) -> dict[str, Any]:
        return {
            "account_sid": call.account_sid,
            "api_version": API_VERSION,
            "direction": call.direction,
            "from": call.from_,
            "sid": call.sid,
            "status": call.status,
            "to": call.to,
            "uri": f"/{API_VERSION}/Accounts/{call.account_sid}/Calls/{call.sid}.json",
        }

    # -- the other party -------------------------------------------------------------

    async def answer(self, sid: str) -> None:
        """The called party picks up: the call is in progress and runs its TwiML."""
        call = self.calls[sid]
        if call.status in TERMINAL or call.status == "in-progress":
            return
        call.answered_at = datetime.now(UTC)
        await self._set_status(call, "in-progress")
        self._start_talking(call)
        await self._run_twiml(call)

    async def hangup(self, sid: str) -> None:
        """The called (or calling) party hangs up."""
        call = self.calls[sid]
        if call.status not in TERMINAL:
            await self._end(call, "completed" if call.status == "in-progress" else "canceled")

    async def place_inbound(
        self,
        url: str,
        *,
        account_sid: str,
        from_: str,
        to: str,
        status_callback: str | None = None,
        wait: bool = True,
    ) -> NetworkCall:
        """A borrower calls our number: ask the voice webhook `url` for TwiML and run it
        (to its end with `wait`, else in the background once it was answered)."""
        call = NetworkCall(
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
        status, payload = await self.post(url, params, account_sid)
        if status != 200:
            call.status = "failed"
            return call
        call.twiml = payload.decode("utf-8")
        call.answered_at = datetime.now(UTC)
        call.status = "in-progress"
        self._start_talking(call)
        if wait:
            await self._run_twiml(call)
        else:
            self.spawn(self._run_twiml(call))
        return call

    # -- lifecycle -------------------------------------------------------------------

    def spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def live(self) -> list[NetworkCall]:
        return [c for c in self.calls.values() if c.status not in TERMINAL]

    async def settle(self) -> None:
        """Wait until nothing is scheduled: every call's progress and callback is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def posted(self) -> None:
        """Wait until every callback queued so far was posted (timers may still run)."""
        while self._posting:
            await asyncio.gather(*list(self._posting), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- a call's progress -------------------------------------------------------------

    async def _progress(self, call: NetworkCall) -> None:
        if call.status in TERMINAL:  # hung up before it got going
            return
        await self._set_status(call, "initiated")
        await self._set_status(call, "ringing")
        outcome = self.outcomes.get(call.to, "answered")
        if outcome == "hold":
            return
        if self.ring_seconds:
            await asyncio.sleep(self.ring_seconds)
            if call.status != "ringing":  # hung up while it rang
                return
        if outcome in ("answered", "machine"):
            await self.answer(call.sid)
        else:
            await self._end(call, outcome)

    def _start_talking(self, call: NetworkCall) -> None:
        if self.talk_seconds is None:
            return
        if call.direction == "inbound" or E164.match(call.to):
            self.spawn(self._talk(call, self.talk_seconds))

    async def _talk(self, call: NetworkCall, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if call.status == "in-progress":
            await self.hangup(call.sid)

    async def _end(self, call: NetworkCall, status: str) -> None:
        await self._leave_conference(call)
        await self._set_status(call, status)

    async def _run_twiml(self, call: NetworkCall) -> None:
        root = _parse(call.twiml)
        for verb in root:
            if call.status in TERMINAL:
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

    async def _join_conference(self, call: NetworkCall, element: ET.Element) -> None:
        name = (element.text or "").strip()
        conference = self.conferences.get(name)
        records = element.get("record") in ("record-from-start", "true")
        if conference is None or conference.ended:
            conference = NetworkConference(
                sid="CF" + uuid.uuid4().hex,
                name=name,
                account_sid=call.account_sid,
                status_callback=element.get("statusCallback"),
                status_events=frozenset((element.get("statusCallbackEvent") or "").split()),
                record_callback=element.get("recordingStatusCallback") if records else None,
                started_at=datetime.now(UTC),
            )
            self.conferences[name] = conference
            await self._conference_event(conference, "conference-start", None, "start")
        if conference.record_callback is None and records:
            # Recording starts with the first participant who asks for it.
            conference.record_callback = element.get("recordingStatusCallback")
        conference.participants[call.sid] = element.get("muted") == "true"
        call.conference = name
        await self._conference_event(conference, "participant-join", call.sid, "join")

    async def _leave_conference(self, call: NetworkCall) -> None:
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
                self._recording(
                    conference.record_callback,
                    conference.account_sid,
                    {
                        "ConferenceSid": conference.sid,
                        "RecordingSource": "StartConferenceRecordingAPI",
                        "RecordingDuration": str(_seconds_since(conference.started_at)),
                    },
                )

    async def _voicemail(self, call: NetworkCall, element: ET.Element) -> None:
        started = datetime.now(UTC)
        if self.voicemail_seconds:
            await asyncio.sleep(self.voicemail_seconds)  # the caller speaks (or hangs up)
        callback = element.get("recordingStatusCallback")
        if callback:
            self._recording(
                callback,
                call.account_sid,
                {
                    "CallSid": call.sid,
                    "RecordingSource": "RecordVerb",
                    "RecordingDuration": str(_seconds_since(started)),
                },
            )

    def _recording(self, url: str, account_sid: str, extra: dict[str, str]) -> None:
        sid = "RE" + uuid.uuid4().hex
        params = {
            "AccountSid": account_sid,
            "RecordingSid": sid,
            "RecordingStatus": "completed",
            "RecordingChannels": "1",
            "RecordingStartTime": format_datetime(datetime.now(UTC), usegmt=True),
            **extra,
        }
        where = self.recording_url(account_sid, sid)
        if where is not None:
            params["RecordingUrl"] = where
        self.queue_callback(url, params, account_sid, key=sid)

    async def _conference_event(
        self, conference: NetworkConference, event: str, call_sid: str | None, short: str
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
        self.queue_callback(
            conference.status_callback, params, conference.account_sid, key=conference.sid
        )

    async def _set_status(self, call: NetworkCall, status: str) -> None:
        call.status = status
        event = "answered" if status == "in-progress" else status
        if event in TERMINAL:
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
        if status == "in-progress":
            if self.outcomes.get(call.to) == "machine":
                params["AnsweredBy"] = MACHINE
            elif call.to in self.answered_by:
                params["AnsweredBy"] = self.answered_by[call.to]
        if status in TERMINAL:
            duration = _seconds_since(call.answered_at) if call.answered_at else 0
            params |= {"CallDuration": str(duration), "Duration": str((duration + 59) // 60)}
        self.queue_callback(call.status_callback, params, call.account_sid, key=call.sid)

    def queue_callback(
        self, url: str, params: dict[str, str], account_sid: str, *, key: str
    ) -> None:
        """Post in the background, in order per `key` (asyncio.Lock wakes waiters FIFO)."""
        lock = self._order.setdefault(key, asyncio.Lock())

        async def post() -> None:
            async with lock:
                try:
                    await self.post(url, params, account_sid)
                except Exception:  # a callback that cannot be posted is lost, as on Twilio
                    log.exception("voice callback to %s failed", url)

        task = self.spawn(post())
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)


# -- the callbacks' format, for whoever receives them -------------------------------------


def callback_params(body: bytes) -> dict[str, str]:
    """A callback's parameters from its form-encoded body."""
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def callback_time(params: Mapping[str, str]) -> datetime:
    """When the callback's event happened: its ``Timestamp`` (RFC 2822), else now."""
    stamp = params.get("Timestamp")
    if stamp:
        with contextlib.suppress(TypeError, ValueError):
            parsed = parsedate_to_datetime(stamp)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _parse(twiml: str) -> ET.Element:
    # The TwiML comes from the Parley process that placed the call (no defusedxml needed).
    return ET.fromstring(twiml)  # noqa: S314


def _checked(twiml: str) -> None:
    try:
        _parse(twiml)
    except ET.ParseError:
        raise NetworkError(400, 12100, "Document parse failure") from None


def _seconds_since(start: datetime | None) -> int:
    if start is None:
        return 0
    return max(1, round((datetime.now(UTC) - start).total_seconds()))
