"""What an outgoing message must say: the opt-out notice and the debt-collector
disclosure; and the employer email-address check.

Pure functions, no I/O. The caller renders a message body, passes it here before the
message is stored, keeps the returned body, and stores `ContentResult.as_record()` with
the message as compliance evidence (what was already present, what was added). The rules
come from ``shared/reference/compliance.md``:

* **Opt-out notice** (Reg F 1006.6(e)): every email and text about a debt includes a clear,
  simple way to opt out. `has_opt_out_notice` recognises an existing instruction;
  `ensure_opt_out_notice` / `ensure_email_opt_out` append the organization's notice when
  none is found.
* **Debt-collector disclosure** (FDCPA 807(11), Reg F 1006.18(e)): the first communication
  says it is an attempt to collect a debt and that any information obtained will be used
  for that purpose; later ones say they come from a debt collector. `DisclosurePolicy`
  makes it per-organization (a first-party creditor is not a debt collector and turns it
  off).
* **Limited-content voicemail** (Reg F 1006.2(j)): see :mod:`parley.compliance.voicemail`.
* **Employer email addresses** (Reg F 1006.6(d)(4), 1006.22(f)(3)): `employer_email_verdict`.

Detection is deliberately strict
--------------------------------

Missing a notice is a violation; appending one that was already there (in other words)
costs a line of text. So the detectors look for *instructions* (a verb such as reply/text
next to a carrier keyword, an "unsubscribe" link, "to opt out"), not for words: "please
don't stop your payments" and "the bus stop" are not opt-out notices, "this is not an
attempt to collect a debt" is not a disclosure. Text is compared case-, accent- and
punctuation-insensitively, one clause at a time (clauses end at . ! ? ; : , and line
breaks); a negation ("not", "never", "no", "cannot", "don't") in the two words before an
instruction cancels it.

Everything appended starts a clause of its own (a line break, see `_SEPARATORS`), every
configured text is checked at construction to be recognised on its own, and
`apply_content_rules` re-reads its final parts before returning (raising ValueError for
HTML too malformed to show what was added). So its output always passes both checks, and
applying it to its own output adds nothing.
"""

from __future__ import annotations

import html as html_lib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Final, Literal
from urllib.parse import urlsplit

from parley.compliance.optout import OPT_OUT_KEYWORDS
from parley.domain.channels import Channel

__all__ = [
    "CONTACT_POINT_SOURCES",
    "DEFAULT_DISCLOSURE_POLICY",
    "DEFAULT_OPT_OUT_NOTICE",
    "DISCLOSURE_CITATION",
    "DISCLOSURE_RULE",
    "EMPLOYER_EMAIL_ADDRESS",
    "EMPLOYER_SOURCES",
    "INITIAL_DISCLOSURE",
    "OPT_OUT_CITATION",
    "OPT_OUT_RULE",
    "SUBSEQUENT_DISCLOSURE",
    "ContentCheck",
    "ContentResult",
    "DisclosurePolicy",
    "DisclosureResult",
    "EmailNoticeResult",
    "NoticeResult",
    "OptOutNotice",
    "apply_content_rules",
    "employer_email_verdict",
    "ensure_disclosure",
    "ensure_email_opt_out",
    "ensure_opt_out_notice",
    "has_disclosure",
    "has_opt_out_notice",
    "html_visible_text",
]

OPT_OUT_RULE: Final = "opt_out_notice"
OPT_OUT_CITATION: Final = "12 CFR 1006.6(e)"
DISCLOSURE_RULE: Final = "debt_collector_disclosure"
DISCLOSURE_CITATION: Final = "15 USC 1692e(11) (FDCPA 807(11)); 12 CFR 1006.18(e)"

_WRITTEN_CHANNELS: Final = frozenset({Channel.EMAIL, Channel.SMS, Channel.WHATSAPP})

# Why a line break and not a space before anything appended to a text message: both cost
# exactly one unit (LF is in the GSM 03.38 basic table, and one UTF-16 unit in UCS-2), so
# the segment count is the same either way, but only the line break guarantees the notice
# reads as its own sentence -- "... I will not" + " Reply STOP to opt out." would read as
# "not reply STOP". Email text gets a blank line, the usual footer separation (no cost).
_SEPARATORS: Final[Mapping[Channel, str]] = {
    Channel.SMS: "\n",
    Channel.WHATSAPP: "\n",
    Channel.EMAIL: "\n\n",
}

# --- text normalization -----------------------------------------------------------------

_NT: Final = re.compile(r"n['\u2019\u02bc]t\b", re.IGNORECASE)
_CLAUSE_BREAKS: Final = re.compile(r"[.!?;:,\n\r\v\f\x85\u2028\u2029\u2026|\u3002\uff0c]+")
_WORD: Final = re.compile(r"[^\W_]+")
_NEGATORS: Final = frozenset({"not", "never", "no", "cannot", "dont", "nor"})
_URL: Final = re.compile(r"(?:https?|mailto):\S+|www\.\S+", re.IGNORECASE)


def _clauses(text: str) -> list[str]:
    """Clauses of `text` as space-joined folded words ("Don't TEXT!" -> ["do not text"]).

    A URL is a clause of its own: its path words ("/never/") must not negate or complete
    the instruction next to it, while an "unsubscribe" in a visible URL still counts.
    """
    text = _URL.sub(lambda m: f"\n{m.group()}\n", text)
    text = _NT.sub(" not", text)
    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    clauses = (" ".join(_WORD.findall(part)) for part in _CLAUSE_BREAKS.split(folded))
    return [clause for clause in clauses if clause]


def _affirmed(pattern: re.Pattern[str], clause: str) -> bool:
    """True if `pattern` occurs in `clause` without a negation just before it."""
    for match in pattern.finditer(clause):
        before = clause[: match.start()].split()[-2:]
        if not _NEGATORS.intersection(before):
            return True
    return False


def _any_clause(patterns: Sequence[re.Pattern[str]], text: str) -> bool:
    return any(_affirmed(p, clause) for clause in _clauses(text) for p in patterns)


class _VisibleText(HTMLParser):
    """Collects the text a reader sees; block elements break clauses."""

    _HIDDEN: Final = frozenset({"script", "style", "head", "title", "template", "noscript"})
    _BLOCKS: Final = frozenset(
        {
            "p",
            "br",
            "div",
            "li",
            "ul",
            "ol",
            "tr",
            "td",
            "th",
            "table",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "hr",
            "blockquote",
            "section",
            "footer",
            "header",
            "body",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


# A browser hides an unclosed comment up to the end of the document (HTML5 "EOF in
# comment"); html.parser would show it as text, so comments are removed first.
_COMMENT: Final = re.compile(r"<!--(?:.*?-->|.*\Z)", re.DOTALL)


def html_visible_text(markup: str) -> str:
    """The text of an HTML body as a reader sees it (no tags, comments, scripts or head).

    An instruction hidden in an attribute (an ``href`` alone) is not "clear" in the sense
    of 1006.6(e), so the HTML detectors read only this text. Elements hidden by CSS are
    not detected; templates should not hide compliance text. Raises ValueError for
    markup the standard parser gives up on.
    """
    parser = _VisibleText()
    try:
        parser.feed(_COMMENT.sub(" ", markup))
        parser.close()
    except AssertionError as exc:  # _markupbase's verdict on e.g. "<![bogus["
        raise ValueError(f"the HTML part cannot be parsed: {exc}") from None
    return "".join(parser.parts)


# --- opt-out notice (Reg F 1006.6(e)) ----------------------------------------------------

# A notice must name a keyword our own inbox honors as an opt-out (optout.py), otherwise
# following the instruction would not work. Two-word spellings as optout.py accepts them.
_KEYWORDS: Final = "|".join(
    sorted({k.lower() for k in OPT_OUT_KEYWORDS} | {"opt out", "stop all"}, key=len, reverse=True)
)
_VERBS: Final = (
    r"(?:reply|replying|respond|text|txt|send|sending|message|msg|sms|type|enter"
    r"|responda|responde|envia|envie)"
)
# Words allowed between the verb and the keyword: "reply back with the word STOP".
_FILLER: Final = r"(?:(?:back|with|us|just|only|simply|the word|the keyword|word|keyword) )*"
# "Reply STOP by 5pm", "text STOP your payment"... are not what an instruction looks like.
_NOT_AFTER: Final = r"(?! (?:by|your|paying|payment|payments|making)\b)"
_REPLY_INSTRUCTION: Final = re.compile(rf"\b{_VERBS} {_FILLER}(?:{_KEYWORDS})\b{_NOT_AFTER}")
# "STOP to end", "STOP 2 quit" -- only at the start of a clause, where it is imperative.
_KEYWORD_TO_END: Final = re.compile(
    r"^(?:stop|stopall|stop all|optout|opt out|unsubscribe) (?:to|2) "
    r"(?:opt out|optout|end|stop|unsubscribe|cancel|quit|cease|be removed|unsub)\b"
)
_MAIL: Final = r"(?:e ?mails?|messages|communications|correspondence|notifications)"
_MAIL_QUALIFIERS: Final = (
    r"(?:(?:these|this|our|future|further|all|any|such|more|email|e mail|collection) )*"
)
_UNSUBSCRIBE: Final = re.compile(r"\bunsubscribe\b(?! (?:request|requests|confirmation)\b)")
_OPT_OUT_PHRASE: Final = re.compile(
    r"^opt out$"  # "Opt out: https://..." -- the colon ends the clause
    r"|\b(?:to|can|may|please|click|tap) opt out\b"
    r"|\bopt out (?:here|at|below|by|using|via|link|page|now|anytime)\b"
    rf"|\bopt out of (?:receiving )?{_MAIL_QUALIFIERS}{_MAIL}\b"
)
_STOP_RECEIVING: Final = re.compile(
    rf"(?:^|\b(?:to|can|may|please) )stop receiving {_MAIL_QUALIFIERS}{_MAIL}\b"
)

# Text messages: only a reply instruction counts. A link is a way to opt out too, but a
# reply is what Parley's inbox (optout.py) processes, so it is what we can stand behind.
_TEXT_PATTERNS: Final = (_REPLY_INSTRUCTION, _KEYWORD_TO_END)
# Email: an unsubscribe/opt-out instruction or link text; a STOP reply also works by email.
_EMAIL_PATTERNS: Final = (
    _UNSUBSCRIBE,
    _OPT_OUT_PHRASE,
    _STOP_RECEIVING,
    _REPLY_INSTRUCTION,
    _KEYWORD_TO_END,
)


def _written(channel: Channel, what: str) -> None:
    if channel not in _WRITTEN_CHANNELS:
        raise ValueError(
            f"{what} applies to emails and text messages (Reg F 1006.6(e)), not to {channel}: "
            "a call has no body to put it in (a voicemail is a LimitedContentVoicemail)"
        )


def has_opt_out_notice(text: str, channel: Channel, *, html: bool = False) -> bool:
    """True if `text` already tells the consumer how to opt out on `channel`.

    SMS/WhatsApp: a reply instruction naming an opt-out keyword ("Reply STOP to opt out",
    "Text STOP to 12345", "Txt STOP", "To opt out reply STOP", "STOP to end"). Email:
    additionally an unsubscribe/opt-out instruction or link text ("Unsubscribe",
    "click here to opt out", "to stop receiving these emails"). With ``html=True`` only the
    visible text of the markup is read. Raises ValueError for VOICE (not applicable).
    """
    _written(channel, "the opt-out notice")
    if html:
        text = html_visible_text(text)
    patterns = _EMAIL_PATTERNS if channel is Channel.EMAIL else _TEXT_PATTERNS
    return _any_clause(patterns, text)


_URL_PLACEHOLDER: Final = "{unsubscribe_url}"
_SAMPLE_URL: Final = "https://example.invalid/x"  # neutral: the words must do the work


@dataclass(frozen=True, slots=True)
class OptOutNotice:
    """An organization's opt-out notice texts, one per channel.

    The email texts carry ``{unsubscribe_url}`` (substituted literally, so other braces are
    harmless). Every text is checked here to be recognised by `has_opt_out_notice` on its
    own: a notice the detector cannot see would be appended again on every pass. Keep the
    SMS text in the GSM-7 alphabet: one other character makes the whole message UCS-2.
    """

    sms: str = "Reply STOP to opt out."
    whatsapp: str = "Reply STOP to opt out."
    email_text: str = "To stop receiving emails about this account, unsubscribe: {unsubscribe_url}"
    email_html: str = (
        "<p>To stop receiving emails about this account, "
        '<a href="{unsubscribe_url}">unsubscribe</a>.</p>'
    )

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name, channel in (("sms", Channel.SMS), ("whatsapp", Channel.WHATSAPP)):
            if not has_opt_out_notice(getattr(self, name), channel):
                problems.append(f"{name} is not recognised as an opt-out instruction")
        for name, is_html in (("email_text", False), ("email_html", True)):
            template: str = getattr(self, name)
            if _URL_PLACEHOLDER not in template:
                problems.append(f"{name} must contain {_URL_PLACEHOLDER}")
            sample = template.replace(_URL_PLACEHOLDER, _SAMPLE_URL)
            if not has_opt_out_notice(sample, Channel.EMAIL, html=is_html):
                problems.append(f"{name} is not recognised as an opt-out instruction")
        if problems:
            raise ValueError("invalid opt-out notice: " + "; ".join(problems))

    def text_for(self, channel: Channel) -> str:
        """The SMS or WhatsApp notice (email needs a URL: see `email_footers`)."""
        if channel is Channel.SMS:
            return self.sms
        if channel is Channel.WHATSAPP:
            return self.whatsapp
        raise ValueError(f"no plain opt-out notice for {channel}")

    def email_footers(self, unsubscribe_url: str) -> tuple[str, str]:
        """(text footer, HTML footer) for `unsubscribe_url`, HTML-escaped in the markup."""
        _check_unsubscribe_url(unsubscribe_url)
        escaped = html_lib.escape(unsubscribe_url, quote=True)
        return (
            self.email_text.replace(_URL_PLACEHOLDER, unsubscribe_url),
            self.email_html.replace(_URL_PLACEHOLDER, escaped),
        )


DEFAULT_OPT_OUT_NOTICE: Final = OptOutNotice()


def _check_unsubscribe_url(url: str) -> None:
    # The URL lands in a text footer and an href: no whitespace or control characters
    # (header/markup injection), and a scheme a mail client opens -- never javascript:.
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("unsubscribe_url must be a non-empty URL without spaces")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("https", "http", "mailto"):
        raise ValueError("unsubscribe_url must be an https, http or mailto URL")
    if parts.scheme.lower() != "mailto" and not parts.netloc:
        raise ValueError("unsubscribe_url must name a host")


def _append(body: str, addition: str, separator: str) -> str:
    # Trailing whitespace would only cost units before the separator.
    kept = body.rstrip()
    return f"{kept}{separator}{addition}" if kept else addition


_BODY_END: Final = re.compile(r"</body\s*>", re.IGNORECASE)


def _insert_html(markup: str, fragment: str) -> str:
    """`fragment` just before the last ``</body>``, else at the end of `markup`."""
    ends = list(_BODY_END.finditer(markup))
    if ends:
        at = ends[-1].start()
        return f"{markup[:at]}{fragment}\n{markup[at:]}"
    kept = markup.rstrip()
    return f"{kept}\n{fragment}" if kept else fragment


Status = Literal["added", "present", "not_applicable"]


@dataclass(frozen=True, slots=True)
class NoticeResult:
    """A text message body after `ensure_opt_out_notice`; ``added`` is the notice appended.

    The caller counts segments on ``body``: the notice and its one-unit separator are part
    of what the provider bills.
    """

    body: str
    channel: Channel
    added: str | None = None

    @property
    def status(self) -> Status:
        return "added" if self.added is not None else "present"

    def as_record(self) -> dict[str, object]:
        return {
            "rule": OPT_OUT_RULE,
            "citation": OPT_OUT_CITATION,
            "channel": self.channel.value,
            "status": self.status,
            "added": self.added,
        }


def ensure_opt_out_notice(
    body: str, channel: Channel, notice: OptOutNotice = DEFAULT_OPT_OUT_NOTICE
) -> NoticeResult:
    """`body` with the channel's opt-out notice on its own line unless it already has one.

    Trailing whitespace of `body` is dropped before the line break (it would only cost
    units). SMS and WhatsApp only. VOICE raises ValueError (1006.6(e) covers emails and texts);
    EMAIL raises ValueError too: an email notice needs an unsubscribe link and an HTML
    part, see `ensure_email_opt_out`.
    """
    _written(channel, "the opt-out notice")
    if channel is Channel.EMAIL:
        raise ValueError("email needs an unsubscribe link: use ensure_email_opt_out")
    if has_opt_out_notice(body, channel):
        return NoticeResult(body, channel)
    text = notice.text_for(channel)
    return NoticeResult(_append(body, text, _SEPARATORS[channel]), channel, text)


@dataclass(frozen=True, slots=True)
class EmailNoticeResult:
    """Both parts of an email after `ensure_email_opt_out`; ``*_added`` is what was added."""

    text: str
    html: str | None
    text_added: str | None = None
    html_added: str | None = None

    def as_record(self) -> dict[str, object]:
        record: dict[str, object] = {
            "rule": OPT_OUT_RULE,
            "citation": OPT_OUT_CITATION,
            "channel": Channel.EMAIL.value,
            "text": {"status": _status(self.text_added), "added": self.text_added},
        }
        if self.html is not None:
            record["html"] = {"status": _status(self.html_added), "added": self.html_added}
        return record


def _status(added: str | None) -> Status:
    return "added" if added is not None else "present"


def ensure_email_opt_out(
    text: str,
    html: str | None,
    unsubscribe_url: str,
    notice: OptOutNotice = DEFAULT_OPT_OUT_NOTICE,
) -> EmailNoticeResult:
    """Both parts of an email, each with an opt-out footer unless it already has one.

    A mail client shows one part or the other, so each is checked on its own. The HTML
    footer goes before ``</body>`` when there is one, else at the end. Raises ValueError
    for an unusable `unsubscribe_url`, or when the HTML is so malformed (an unclosed
    comment or script) that the footer would not be visible.
    """
    text_footer, html_footer = notice.email_footers(unsubscribe_url)
    text_added = None
    if not has_opt_out_notice(text, Channel.EMAIL):
        text = _append(text, text_footer, _SEPARATORS[Channel.EMAIL])
        text_added = text_footer
        if not has_opt_out_notice(text, Channel.EMAIL):  # e.g. a URL that reads "not"
            raise ValueError("the opt-out footer is not recognisable with this URL")
    html_added = None
    if html is not None and not has_opt_out_notice(html, Channel.EMAIL, html=True):
        html = _insert_html(html, html_footer)
        html_added = html_footer
        if not has_opt_out_notice(html, Channel.EMAIL, html=True):
            raise ValueError("the HTML part is malformed: an opt-out footer would be hidden")
    return EmailNoticeResult(text, html, text_added, html_added)


# --- debt-collector disclosure (FDCPA 807(11), Reg F 1006.18(e)) -------------------------

# FDCPA 807(11): the initial communication discloses "that the debt collector is
# attempting to collect a debt and that any information obtained will be used for that
# purpose", later ones "that the communication is from a debt collector". The initial
# text carries both so that one sentence pair serves every first message.
INITIAL_DISCLOSURE: Final = (
    "This is an attempt to collect a debt and any information obtained will be used for "
    "that purpose. This communication is from a debt collector."
)
SUBSEQUENT_DISCLOSURE: Final = "This communication is from a debt collector."

_COLLECT: Final = re.compile(
    r"\battempt(?:ing|s)?(?: by (?:a|the) debt collector)? to collect "
    r"(?:(?:a|an|the|this|that|your|outstanding|consumer) )*debts?\b"
)
_PURPOSE: Final = re.compile(
    r"\binformation (?:(?:obtained|we obtain|you provide|received|gathered) )?"
    r"(?:will|may|shall) be used for (?:that|this|the same) purpose\b"
)
_COLLECTOR: Final = re.compile(
    r"\b(?:from|by) (?:a|an|the) debt collector\b|\b(?:is|are|am) (?:a|the) debt collector\b"
)


def has_disclosure(text: str, *, initial: bool) -> bool:
    """True if `text` already carries the disclosure FDCPA 807(11) asks for.

    ``initial=True``: both "attempt(ing) to collect a debt" and "information obtained will
    be used for that purpose". ``initial=False``: "from a debt collector" (or "we are a debt
    collector"). Negated forms ("this is not an attempt to collect a debt", the usual
    bankruptcy disclaimer) do not count.
    """
    if initial:
        return _any_clause((_COLLECT,), text) and _any_clause((_PURPOSE,), text)
    return _any_clause((_COLLECTOR,), text)


@dataclass(frozen=True, slots=True)
class DisclosurePolicy:
    """An organization's debt-collector disclosure: on/off, the two texts, the channels.

    On by default (the safe side for a collection agency); a first-party creditor, which
    is not a "debt collector" under the FDCPA, turns it off. Voice is never a channel here:
    a live call's disclosure is spoken by the agent, and a limited-content voicemail must
    not carry it (it would stop being limited-content).
    """

    enabled: bool = True
    initial_text: str = INITIAL_DISCLOSURE
    subsequent_text: str = SUBSEQUENT_DISCLOSURE
    channels: frozenset[Channel] = frozenset({Channel.EMAIL, Channel.SMS, Channel.WHATSAPP})

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", frozenset(self.channels))
        problems: list[str] = []
        if Channel.VOICE in self.channels:
            problems.append("voice cannot carry a written disclosure")
        if self.enabled:
            # A text the detector does not recognise would be appended on every pass.
            if not has_disclosure(self.initial_text, initial=True):
                problems.append(
                    "initial_text must say it is an attempt to collect a debt and that "
                    "any information obtained will be used for that purpose"
                )
            if not has_disclosure(self.subsequent_text, initial=False):
                problems.append("subsequent_text must say it is from a debt collector")
        if problems:
            raise ValueError("invalid disclosure policy: " + "; ".join(problems))

    def applies_to(self, channel: Channel) -> bool:
        return self.enabled and channel in self.channels

    def text_for(self, *, first_communication: bool) -> str:
        return self.initial_text if first_communication else self.subsequent_text

    def as_record(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "initialText": self.initial_text,
            "subsequentText": self.subsequent_text,
            "channels": sorted(channel.value for channel in self.channels),
        }


DEFAULT_DISCLOSURE_POLICY: Final = DisclosurePolicy()

DisclosureKind = Literal["initial", "subsequent"]


@dataclass(frozen=True, slots=True)
class DisclosureResult:
    """A body after `ensure_disclosure`. ``applies`` is False when the policy is off or
    does not cover the channel; ``added`` is the text appended, if any."""

    body: str
    channel: Channel
    kind: DisclosureKind
    applies: bool
    added: str | None = None

    @property
    def status(self) -> Status:
        if not self.applies:
            return "not_applicable"
        return _status(self.added)

    def as_record(self) -> dict[str, object]:
        return {
            "rule": DISCLOSURE_RULE,
            "citation": DISCLOSURE_CITATION,
            "channel": self.channel.value,
            "kind": self.kind,
            "status": self.status,
            "added": self.added,
        }


def ensure_disclosure(
    body: str,
    channel: Channel,
    *,
    first_communication: bool,
    policy: DisclosurePolicy = DEFAULT_DISCLOSURE_POLICY,
) -> DisclosureResult:
    """`body` with the disclosure appended when the policy applies and it is missing.

    The first communication on the debt gets the initial text (also when the body only
    says "from a debt collector": that is not enough for a first message).
    """
    kind: DisclosureKind = "initial" if first_communication else "subsequent"
    if not policy.applies_to(channel):
        return DisclosureResult(body, channel, kind, applies=False)
    if has_disclosure(body, initial=first_communication):
        return DisclosureResult(body, channel, kind, applies=True)
    text = policy.text_for(first_communication=first_communication)
    new_body = _append(body, text, _SEPARATORS[channel])
    return DisclosureResult(new_body, channel, kind, applies=True, added=text)


# --- both rules, in a fixed order --------------------------------------------------------

Part = Literal["text", "html"]


@dataclass(frozen=True, slots=True)
class ContentCheck:
    """One rule on one part of a message: was it present, added, or not applicable."""

    rule: str
    part: Part
    status: Status
    added: str | None = None
    kind: DisclosureKind | None = None  # disclosure only

    def as_record(self) -> dict[str, object]:
        record: dict[str, object] = {
            "rule": self.rule,
            "citation": DISCLOSURE_CITATION if self.rule == DISCLOSURE_RULE else OPT_OUT_CITATION,
            "part": self.part,
            "status": self.status,
            "added": self.added,
        }
        if self.kind is not None:
            record["kind"] = self.kind
        return record


@dataclass(frozen=True, slots=True)
class ContentResult:
    """The final body (and email HTML) and what each rule found or added, as evidence."""

    channel: Channel
    first_communication: bool
    body: str
    html: str | None
    checks: tuple[ContentCheck, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return any(check.status == "added" for check in self.checks)

    def as_record(self) -> dict[str, object]:
        """JSON-serialisable, camelCase; stored with the message."""
        return {
            "channel": self.channel.value,
            "firstCommunication": self.first_communication,
            "changed": self.changed,
            "checks": [check.as_record() for check in self.checks],
        }


def apply_content_rules(
    body: str,
    channel: Channel,
    *,
    first_communication: bool,
    policy: DisclosurePolicy = DEFAULT_DISCLOSURE_POLICY,
    notice: OptOutNotice = DEFAULT_OPT_OUT_NOTICE,
    html: str | None = None,
    unsubscribe_url: str | None = None,
) -> ContentResult:
    """Disclosure first, then the opt-out notice, on each part of the message.

    The order is fixed so the opt-out instruction is always the last line, where readers
    look for it. Email requires `unsubscribe_url` (even when the body already has a
    notice, so a missing URL fails in tests rather than on the one template without a
    footer) and accepts `html`; text messages accept neither. VOICE raises ValueError:
    a call's content is a live conversation or a `LimitedContentVoicemail`, never a body.
    """
    _written(channel, "content rules")
    if channel is Channel.EMAIL:
        if unsubscribe_url is None:
            raise ValueError("an email needs unsubscribe_url for its opt-out notice")
        _check_unsubscribe_url(unsubscribe_url)
    elif html is not None or unsubscribe_url is not None:
        raise ValueError(f"html and unsubscribe_url apply to email only, not to {channel}")

    disclosure = ensure_disclosure(
        body, channel, first_communication=first_communication, policy=policy
    )
    kind = disclosure.kind
    checks = [ContentCheck(DISCLOSURE_RULE, "text", disclosure.status, disclosure.added, kind)]
    html_disclosure: str | None = None
    if html is not None:
        status: Status = "not_applicable"
        if disclosure.applies:
            status = "present"
            if not has_disclosure(html_visible_text(html), initial=first_communication):
                text = policy.text_for(first_communication=first_communication)
                html_disclosure = f"<p>{html_lib.escape(text, quote=False)}</p>"
                html = _insert_html(html, html_disclosure)
                status = "added"
                # Same safety net as for the footer: what we insert must be visible.
                if not has_disclosure(html_visible_text(html), initial=first_communication):
                    raise ValueError("the HTML part is malformed: the disclosure would be hidden")
        checks.append(ContentCheck(DISCLOSURE_RULE, "html", status, html_disclosure, kind))

    if channel is Channel.EMAIL:
        assert unsubscribe_url is not None  # checked above
        email = ensure_email_opt_out(disclosure.body, html, unsubscribe_url, notice)
        new_body, new_html = email.text, email.html
        checks.append(
            ContentCheck(OPT_OUT_RULE, "text", _status(email.text_added), email.text_added)
        )
        if new_html is not None:
            checks.append(
                ContentCheck(OPT_OUT_RULE, "html", _status(email.html_added), email.html_added)
            )
    else:
        sms = ensure_opt_out_notice(disclosure.body, channel, notice)
        new_body, new_html = sms.body, None
        checks.append(ContentCheck(OPT_OUT_RULE, "text", sms.status, sms.added))

    # Postcondition, checked rather than assumed: an insertion can change how the markup
    # before it parses (an unterminated "<?..." or "<a" swallows up to the next ">"), so
    # both rules are read again on the final parts. This is also what makes a second pass
    # a no-op.
    _verify(new_body, channel, first_communication, policy, html=False)
    if new_html is not None:
        _verify(new_html, channel, first_communication, policy, html=True)
    return ContentResult(channel, first_communication, new_body, new_html, tuple(checks))


def _verify(
    content: str, channel: Channel, first: bool, policy: DisclosurePolicy, *, html: bool
) -> None:
    part = "the HTML part" if html else "the text"
    if not has_opt_out_notice(content, channel, html=html):
        raise ValueError(f"{part} is malformed: the opt-out notice would not be visible")
    text = html_visible_text(content) if html else content
    if policy.applies_to(channel) and not has_disclosure(text, initial=first):
        raise ValueError(f"{part} is malformed: the disclosure would not be visible")


# --- employer email addresses (Reg F 1006.6(d)(4), 1006.22(f)(3)) ------------------------

#: Where a contact point came from, as Parley records it (ContactPoint.source):
#: borrower_provided (the consumer gave it), creditor_provided (came with the account),
#: employer / employer_provided (the consumer's employer gave it), skip_trace (found by a
#: locator service), other. The API records "employer"; "employer_provided" is accepted as
#: a synonym so imported data spelled either way is caught.
CONTACT_POINT_SOURCES: Final = frozenset(
    {
        "borrower_provided",
        "creditor_provided",
        "employer",
        "employer_provided",
        "skip_trace",
        "other",
    }
)
EMPLOYER_SOURCES: Final = frozenset({"employer", "employer_provided"})
EMPLOYER_EMAIL_ADDRESS: Final = "employer_email_address"


def employer_email_verdict(
    *,
    source: str,
    label: str | None,
    consumer_used_for_debt: bool,
    consumer_consented: bool,
) -> str | None:
    """``"employer_email_address"`` when the address must not be emailed, else None.

    1006.22(f)(3): no email to an address the collector knows or should know its employer
    gave the consumer -- recorded as source employer(_provided), or labelled "work" (a work
    address is the employer's) -- unless the consumer used that address to communicate
    with the collector about the debt, or consented directly to its use. The other
    conditions of the 1006.6(d)(4) safe harbor (and any opt-out) are checked elsewhere.
    """
    employer = source.strip().casefold() in EMPLOYER_SOURCES or (
        label is not None and label.strip().casefold() == "work"
    )
    if employer and not (consumer_used_for_debt or consumer_consented):
        return EMPLOYER_EMAIL_ADDRESS
    return None
