"""Classify an inbound reply as an opt-out, an opt-in, a help request, or nothing.

Pure functions, no I/O: the inbox hands over the reply text and the channel it came in
on; the result (`ReplyIntent`) says what to do and carries the evidence (the phrase that
matched and the rule names) to store with the consent-ledger entry. The rules come from
``shared/reference/compliance.md``:

* TCPA (FCC 24-24): consent may be revoked "by any reasonable means"; the replies stop,
  quit, end, revoke, opt out, cancel, unsubscribe are revocations per se; "revoking calls
  also revokes texts and vice versa unless the consumer limits it"; one confirmation
  text is allowed.
* Reg F 1006.6(e) ("Opt-out notice"): an opt-out is valid even when the consumer words
  it differently from the instructions -- hence the free-text rules below.
* Reg F 1006.14(h) ("Medium restrictions"): a consumer may tell the collector not to use
  a medium ("stop emailing me") and the collector must stop using *that* medium.

Two ways to match
-----------------

1. **Exact carrier keywords** (``keyword=True``, no agent review). The whole reply must
   consist of one keyword and nothing else that carries meaning. Letter case is ignored;
   everything that is not a letter or a digit -- whitespace, punctuation, symbols and
   emoji, invisible format characters (ZWJ, variation selectors, soft hyphen) -- only
   separates words and is otherwise ignored. So ``" Stop! "``, ``"stop."``,
   ``"STOP 🛑"``, ``"«STOP»"`` and STOP in fullwidth letters are the STOP keyword, while
   ``"🛑"`` alone is nothing and ``"stop 2"`` is not the keyword. Compatibility forms and
   accents are folded (NFKD, combining marks dropped, casefolded). The two-word
   spellings ``OPT OUT`` (also ``opt-out``, ``opt_out``) and ``STOP ALL`` are accepted for
   OPTOUT and STOPALL. The same treatment applies to every keyword, including the opt-in
   ones, so ``"Yes!"`` opts in but ``"yes I can pay friday"`` does not.
2. **Free-text revocations** (``keyword=False``, ``needs_agent_review=True``): a small set
   of readable regular expressions over the normalized text (see `normalize`), with
   negation handling ("please don't stop texting me", "why did you stop calling?") and
   vetoes for descriptive sentences ("I don't email much", "there are no more messages").
   Free text can only ever produce OPT_OUT: a new consent (opt-in) or a help request is
   recognized only from the exact keyword, because an accidental opt-in would resume
   contact the consumer did not ask for. Some basic Spanish is recognized too.

Scope (which channels a revocation covers) -- our reading of compliance.md
------------------------------------------------------------------------------

* The *named* medium is what the reply names: texts (SMS and WhatsApp -- both are text
  messages to the phone contact point), calls (voice), WhatsApp, email, or the phone
  number itself ("lose my number": every phone medium).
* **TCPA linkage**: a revocation of calls, texts, WhatsApp messages or the number also
  revokes the other phone media (SMS, WhatsApp, voice; `PHONE_MEDIA`) unless the
  consumer limits it, either by saying what may continue ("don't call me, text me
  instead", "stop texting, calls are fine", "texts only") or by limiting the revocation
  itself ("only stop the calls"). A limit never un-revokes a medium the consumer named.
  We include WhatsApp in the linked group (the brief's minimum is SMS + voice) because it
  is texting the same phone contact point and the cost of under-revoking is $500 per
  message; over-revoking costs one channel until an agent reviews it.
* **Email stands apart**: the TCPA covers calls and texts, and Reg F 1006.14(h) restricts
  only the medium named, so "stop emailing me" revokes email only and a text/call
  revocation never covers email.
* **Channel-neutral wording** -- the STOP keyword and its siblings, "unsubscribe me",
  "remove me from your list", "no more messages", "I revoke consent" -- applies to the
  medium the reply came in on (then the linkage above: STOP by SMS revokes SMS, WhatsApp
  and voice; STOP by email revokes email).
* **Wording against all contact** -- "do not contact me", "leave me alone", "stop
  harassing me", "cease and desist" -- covers every channel (an agent should also
  consider whether it is a cease-communication request under Reg F 1006.6(c)).
* Time and place restrictions ("don't call me before 9am", "don't call me at work") are
  not parsed: they are reported as a revocation of the medium, flagged for an agent, who
  can turn them into contact-hour rules. Erring this way never contacts someone who said
  "don't".
* OPT_IN restores only the channel the keyword came in on (the issue: START "restores
  it"); HELP and NONE change nothing (empty scope).

Email replies
-------------

Before classifying an email, quoted lines (starting with ``>``), everything after a
quote header ("On ... wrote:", "-----Original Message-----", "From: ", "-- ") and mobile
signatures ("Sent from my iPhone") are removed: the quoted message usually contains our
own "Reply STOP to opt out" notice, which is not the consumer's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Final

from parley.compliance.reply_text import Sentence, analyze, strip_email_quote
from parley.domain.channels import Channel

__all__ = [
    "ALL_MEDIA",
    "CONFIRMATION_TEXTS",
    "HELP_KEYWORDS",
    "HELP_TEXT",
    "KEYWORDS",
    "OPT_IN_KEYWORDS",
    "OPT_OUT_KEYWORDS",
    "PHONE_MEDIA",
    "ReplyAction",
    "ReplyIntent",
    "classify_reply",
    "confirmation_text",
    "describe_scope",
    "match_keyword",
    "normalize",
]


class ReplyAction(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    NONE = "none"


PHONE_MEDIA: Final[frozenset[Channel]] = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.VOICE})
ALL_MEDIA: Final[frozenset[Channel]] = frozenset(Channel)


@dataclass(frozen=True, slots=True)
class ReplyIntent:
    """What an inbound reply asks for, with the evidence for the consent ledger."""

    action: ReplyAction
    scope: frozenset[Channel] = frozenset()
    keyword: bool = False
    needs_agent_review: bool = False
    matched: str = ""
    rules: tuple[str, ...] = ()

    def as_record(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "scope": sorted(channel.value for channel in self.scope),
            "keyword": self.keyword,
            "needsAgentReview": self.needs_agent_review,
            "matched": self.matched,
            "rules": list(self.rules),
        }


NO_INTENT: Final = ReplyIntent(ReplyAction.NONE)

# --- keywords ---------------------------------------------------------------------------

OPT_OUT_KEYWORDS: Final = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS: Final = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS: Final = frozenset({"HELP", "INFO"})

KEYWORDS: Final[Mapping[str, ReplyAction]] = MappingProxyType(
    {
        **dict.fromkeys(sorted(OPT_OUT_KEYWORDS), ReplyAction.OPT_OUT),
        **dict.fromkeys(sorted(OPT_IN_KEYWORDS), ReplyAction.OPT_IN),
        **dict.fromkeys(sorted(HELP_KEYWORDS), ReplyAction.HELP),
    }
)

# Normalized word sequence -> canonical keyword.
_KEYWORD_SPELLINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{keyword.lower(): keyword for keyword in KEYWORDS},
        "opt out": "OPTOUT",
        "stop all": "STOPALL",
    }
)

# --- confirmation and help texts ---------------------------------------------------------

HELP_TEXT: Final = (
    "{organization}: for help with your account contact {help_contact}. "
    "Msg & data rates may apply. Reply STOP to unsubscribe."
)

# One confirmation per action (TCPA: one confirmation text is allowed; Reg F 1006.14(h):
# an electronic confirmation may be sent). Placeholders: {organization}, {media} (see
# `describe_scope`), {help_contact}. NONE gets no reply.
CONFIRMATION_TEXTS: Final[Mapping[ReplyAction, str]] = MappingProxyType(
    {
        ReplyAction.OPT_OUT: (
            "You have been unsubscribed from {media} from {organization}. "
            "Reply START to resubscribe."
        ),
        ReplyAction.OPT_IN: (
            "You have resubscribed to {media} from {organization}. "
            "Reply HELP for help, STOP to unsubscribe."
        ),
        ReplyAction.HELP: HELP_TEXT,
    }
)

_MEDIA_NAMES: Final = (
    (Channel.SMS, "text messages"),
    (Channel.WHATSAPP, "WhatsApp messages"),
    (Channel.VOICE, "calls"),
    (Channel.EMAIL, "emails"),
)


def describe_scope(scope: Iterable[Channel]) -> str:
    """'text messages, WhatsApp messages and calls' for a scope, in a fixed order."""
    wanted = set(scope)
    names = [name for channel, name in _MEDIA_NAMES if channel in wanted]
    if not names:
        return "messages"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def confirmation_text(
    intent: ReplyIntent, *, organization: str, help_contact: str = "our support team"
) -> str | None:
    """The one reply to send for `intent`, or None when nothing should be sent."""
    template = CONFIRMATION_TEXTS.get(intent.action)
    if template is None:
        return None
    return template.format(
        organization=organization,
        media=describe_scope(intent.scope),
        help_contact=help_contact,
    )


def normalize(text: str) -> str:
    """The form the free-text rules read: one sentence per line, folded words, ',' kept.

    Case, accents and compatibility forms are folded; punctuation, symbols and emoji
    separate words; contractions and texting shorthand are expanded ("Don't txt me!!" ->
    "do not text me").
    """
    return "\n".join(sentence.text for sentence in analyze(text)[1])


def match_keyword(text: str) -> str | None:
    """The canonical carrier keyword the whole reply consists of, if any ("OPTOUT")."""
    return _KEYWORD_SPELLINGS.get(analyze(text)[0])


# --- media and scope ----------------------------------------------------------------------


class _Kind(Enum):
    TEXT = "text"
    CALL = "call"
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    PHONE = "phone"  # the number itself
    ALL = "all"  # contact of any kind
    GENERIC = "generic"  # "messages": the medium the reply came in on


_SPECIFIC: Final = (_Kind.TEXT, _Kind.CALL, _Kind.WHATSAPP, _Kind.EMAIL)
_PHONE_KINDS: Final = (_Kind.TEXT, _Kind.CALL, _Kind.WHATSAPP)

_KIND_WORDS: Final[Mapping[_Kind, re.Pattern[str]]] = MappingProxyType(
    {
        kind: re.compile(rf"\b(?:{words})\b")
        for kind, words in {
            _Kind.TEXT: r"texts?|texting|texted|sms|smses|textos?",
            _Kind.CALL: (
                r"calls?|calling|called|phoning|phoned|ring|ringing|voice ?mails?"
                r"|robo ?calls?|robo ?calling|llam\w*"
            ),
            _Kind.WHATSAPP: r"whats ?app\w*",
            _Kind.EMAIL: r"e ?mails?|e ?mailing|e ?mailed|correos?",
            _Kind.PHONE: (
                r"phones?|cell|cellphone|mobile|telephone|numbers?|numero|telefono|celular"
            ),
            _Kind.ALL: (
                r"contact\w*|communicat\w*|correspondence|harass\w*|bother\w*|hound\w*"
                r"|pester\w*|alone|desist|molest\w*|paz|reach(?:ing)? out"
            ),
            _Kind.GENERIC: (
                r"messages?|messaging|messaged|notifications?|reminders?|alerts?"
                r"|mensajes?|escrib\w*|mand\w*|envi\w*|write|writing|spam\w*"
            ),
        }.items()
    }
)

_NAMED: Final[Mapping[_Kind, frozenset[Channel]]] = MappingProxyType(
    {
        _Kind.TEXT: frozenset({Channel.SMS, Channel.WHATSAPP}),
        _Kind.CALL: frozenset({Channel.VOICE}),
        _Kind.WHATSAPP: frozenset({Channel.WHATSAPP}),
        _Kind.EMAIL: frozenset({Channel.EMAIL}),
        _Kind.PHONE: PHONE_MEDIA,
        _Kind.ALL: ALL_MEDIA,
    }
)
_INBOUND_KIND: Final[Mapping[Channel, _Kind]] = MappingProxyType(
    {
        Channel.SMS: _Kind.TEXT,
        Channel.WHATSAPP: _Kind.WHATSAPP,
        Channel.VOICE: _Kind.CALL,
        Channel.EMAIL: _Kind.EMAIL,
    }
)


def _kinds_in(span: str) -> set[_Kind]:
    return {kind for kind, pattern in _KIND_WORDS.items() if pattern.search(span)}


def _revoked_kinds(span: str, channel: Channel) -> set[_Kind]:
    """What a revocation phrase names: the media it mentions (calls, texts, WhatsApp,
    email, the number), else "all contact" wording, else the medium the reply came in on."""
    kinds = _kinds_in(span)
    named = kinds.intersection(_SPECIFIC)
    if _Kind.PHONE in kinds and not named.intersection(_PHONE_KINDS):
        named.add(_Kind.PHONE)  # "by phone or email": the number, and email
    if named:
        return named
    if _Kind.ALL in kinds:
        return {_Kind.ALL}
    return {_INBOUND_KIND[channel]}


def _named_and_implied(kind: _Kind) -> tuple[frozenset[Channel], frozenset[Channel]]:
    named = _NAMED[kind]
    implied = PHONE_MEDIA - named if named <= PHONE_MEDIA else frozenset[Channel]()
    return named, implied


# --- the rule set -------------------------------------------------------------------------
# Building blocks, over normalized text (lower case, no accents, "do not", "you", ...).

_NOUNS: Final = (
    r"(?:text messages?|texts|txts|sms(?:es)?|messages|calls|phone calls|robo ?calls"
    r"|voice ?mails|e ?mails?|whats ?app(?: messages)?|notifications|reminders|alerts"
    r"|communications?|contact|correspondence|harassment|spam)"
)
_VING: Final = (
    r"(?:texting|calling|phoning|ringing|e ?mailing|messaging|whats ?apping|contacting"
    r"|harassing|bothering|hounding|pestering|robo ?calling|spamming|writing(?: to)? me"
    r"|leaving (?:me )?(?:voice ?mails?|messages)|blowing up my (?:phone|cell|number))"
)
_VBASE: Final = (
    r"(?:call|text|e ?mail|message|contact|phone|ring|whats ?app|bother|harass"
    r"|write(?: to)?|reach(?: out to)?|send (?:me )?(?:any )?(?:more )?" + _NOUNS + r"\b"
    r"|leave (?:me )?(?:voice ?mails?|messages))"
)
_DET: Final = r"(?:all|the|these|those|this|that|your|any|such|of|my)"
_MOD: Final = (
    r"(?:more|further|other|future|collection|collections|debt|payment|automated|automatic"
    r"|robo|marketing|promotional|daily|constant|repeated|annoying|harassing|stupid|damn"
    r"|dang|freaking|fucking|bloody|text|sms|phone|voice|e ?mail|whats ?app|reminder)"
)
# "end"/"cancel" only ever take plural or mass nouns here ("end the call" is not a revocation).
_STOP_VERB: Final = r"(?:stop|quit|cease|end|cancel)"
# A listed medium must not be the subject of what follows ("..., texts are fine").
_NOT_A_SUBJECT: Final = r"(?! (?:are|is|would|will|still|fine|ok|okay|only|instead)\b)"
_MEDIA_WORD: Final = (
    r"(?:phones?|cell|mobile|numbers?|e ?mails?|e ?mail address|texts?|text messages?|sms"
    r"|whats ?app|calls?|phone calls|voice ?mails?|messages?|mail)"
)
# "... by phone or email" after a match: widens the span the media are read from.
_QUALIFIER: Final = re.compile(
    r"(?: (?:me|us|again|anymore|any more|ever|please|at all))*"
    r"(?: (?:by|via|through|on|over|with|to|at|of|from)"
    r"(?: (?:my|this|the|your|a|these|those|all))? "
    + _MEDIA_WORD
    + r"\b(?:(?: ,)?(?: (?:or|and|nor))?(?: (?:by|via|on|to|at))?(?: (?:my|this|the))? "
    + _MEDIA_WORD
    + r"\b)*)?"
)

# Text just before a match (end-anchored) that turns it around.
_NEGATED_BEFORE: Final = re.compile(
    r"(?:\b(?:not|never)"
    r"(?: (?:want|wanna|need|mean|meant|trying|going|gonna|asking|asked|ask|telling|told|tell)"
    r"(?: you)?)?(?: to)?(?: ever)?"
    r"|\bwhy (?:did|do|does|have|has|would|are|were|will) (?:you|they|y all)(?: guys| all)?"
    r"(?: ever)?"
    r"|\b(?:did|have|has) (?:you|they)(?: already| just)?"
    r"|\bno need to)\Z"
)
# "I don't call/text/email ..." describes the sender, it is not an instruction.
_SUBJECT_BEFORE: Final = re.compile(
    r"\b(?:i|we|they|he|she|it)(?: (?:just|really|usually|normally|also|actually|generally"
    r"|still|even))?\Z"
)
# "there are no more messages", "I got no more texts".
_HAVE_BEFORE: Final = re.compile(
    r"\b(?:there|are|is|were|was|got|get|getting|receive|received|receiving|had|have|has"
    r"|see|saw|seen|with)(?: any)?\Z"
)

_FILLER: Final = (
    r"(?:please|just|now|ok|okay|so|yes|no|omg|seriously|again|i said|i said to|like i said"
    r"|for the last time|hey|hi|hello|sir|maam|dude|man|guys|i want to|i would like to"
    r"|(?:you|you guys|y all|you all) (?:need|have|got) to|(?:can|could|would|will) you"
    r"|i (?:need|want) you to|i (?:already )?(?:told|asked) you to)"
)
_TAIL: Final = (
    r"(?:it|this|that|now|please|already|immediately|asap|right now|for good|thanks"
    r"|thank you|stop|forever|permanently|them|everything|all|all of it|texting|messaging"
    r"|calling|me|now please)"
)


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    veto_before: re.Pattern[str] | None = None


def _rule(name: str, pattern: str, veto_before: re.Pattern[str] | None = None) -> _Rule:
    return _Rule(name, re.compile(pattern), veto_before)


_REVOCATION_RULES: Final[tuple[_Rule, ...]] = (
    # "stop texting me", "quit calling", "stop sending me emails", "stop all the calls"
    _rule(
        "stop_medium",
        rf"\b{_STOP_VERB}(?: it)?(?: with)?(?: (?:sending|leaving))?(?: (?:me|us))?"
        rf"(?: {_DET})*(?: {_MOD})? (?:{_VING}|{_NOUNS})\b"
        rf"(?:(?: ,)?(?: (?:and|or|nor))?(?: (?:me|us))? (?:{_VING}|{_NOUNS})\b{_NOT_A_SUBJECT})*",
    ),
    # "don't call me", "do not text this number", "I told you not to call me"
    _rule(
        "do_not_contact",
        rf"\b(?:do not|no longer|not to|you not)(?: ever)? {_VBASE}"
        rf"(?:(?: ,)?(?: (?:or|and|nor))? {_VBASE}{_NOT_A_SUBJECT})*"
        r"(?= (?:me|us)\b(?! back\b)| (?:this|my|here|again|anymore|any|ever|please|at|on"
        r"|before|after|until|till|during|between|or|and)\b| ,|$)",
        _SUBJECT_BEFORE,
    ),
    # "never call me again"
    _rule(
        "never_again",
        rf"\bnever(?: ever)? {_VBASE}(?:(?: (?:or|and|nor))? {_VBASE})*"
        r"(?: (?:me|us|this number|my [^\W_]+))? again\b",
    ),
    # "I don't want any more calls", "I do not want to be contacted"
    _rule(
        "do_not_want",
        rf"\b(?:do not|no longer|never)(?: really| even)? (?:want|wish|need)"
        rf"(?: to (?:get|receive|have|keep getting))?(?: {_DET})*(?: {_MOD})? {_NOUNS}\b"
        r"|\b(?:do not|no longer|never) (?:want|wish) (?:to be|being) (?:contacted|called"
        r"|texted|e ?mailed|messaged|bothered|harassed|phoned)\b"
        rf"|\b(?:do not|no longer) want (?:you|anyone|anybody)(?: to)? (?:{_VBASE}|{_VING})",
    ),
    # "no more messages", "no further contact", "no calls please"
    _rule(
        "no_more",
        rf"\bno (?:more|further)(?: {_MOD})? {_NOUNS}\b"
        rf"|\bno(?: {_MOD})? {_NOUNS} (?:please|anymore|any more|ever again|thanks|thank you)\b"
        rf"|^no(?: {_MOD})? {_NOUNS}$",
        _HAVE_BEFORE,
    ),
    # "stop sending these", "can you stop sending"
    _rule(
        "stop_sending",
        rf"\b{_STOP_VERB} sending(?: me| us)?(?: (?:these|those|this|them|that|anything|stuff"
        r"|things))?(?= ,|$)",
    ),
    # "enough with the calls", "I'm sick of your texts", "I want the calls to stop"
    _rule("enough", rf"\benough(?: with)?(?: {_DET})*(?: {_MOD})? {_NOUNS}\b"),
    _rule(
        "sick_of", rf"\b(?:sick|tired) (?:of|with)(?: {_DET})*(?: {_MOD})? (?:{_NOUNS}|{_VING})\b"
    ),
    _rule(
        "want_it_to_stop",
        rf"\b(?:want|need|make|have)(?: {_DET})*(?: {_MOD})? {_NOUNS} to (?:stop|end|cease)\b",
    ),
    # "leave me alone", "cease and desist"
    _rule("leave_alone", r"\bleave (?:me|us|my [^\W_]+)(?: the hell| the fuck)? alone\b"),
    _rule("cease_and_desist", r"\bcease and desist\b"),
    # "unsubscribe me", "how do I unsubscribe", "opt me out", "opting out"
    _rule("unsubscribe", r"\bunsubscrib[^\W_]*"),
    _rule("opt_out", r"\bopt(?:ing|ed)?(?: me| us)? out\b|\boptout\b"),
    # "remove me from your list", "take my number off your call list"
    _rule(
        "list_removal",
        r"\b(?:take|remove|delete|drop|erase|scratch|get|put) (?:me|us|my (?:(?:phone|cell"
        r"|mobile|contact) )?(?:number|info|information|details|e ?mail(?: address)?)"
        r"|this (?:(?:phone|cell) )?(?:number|e ?mail(?: address)?))"
        rf"(?: off| from| out of| on)(?: of)?(?: {_DET})*(?: [^\W_]+){{0,2}}"
        r" (?:lists?|database|system|records)\b",
    ),
    _rule(
        "do_not_call_list",
        r"\bdo not (?:call|contact|text|e ?mail)(?: me)? list\b|\bdnc(?: list)?\b",
    ),
    _rule("lose_my_number", r"\b(?:lose|forget|erase) (?:my|this) (?:(?:phone|cell) )?number\b"),
    # "I revoke consent", "I withdraw my permission", "I do not consent to texts"
    _rule(
        "revoke_consent",
        r"\b(?:revoke|revoking|revoked|withdraw|withdrawing|withdrew|rescind|rescinding"
        rf"|cancel|take back|pull)(?: {_DET}| my)*(?: (?:prior|previous|earlier|express"
        r"|written))? (?:consent|permission)\b"
        r"|\b(?:do not|no longer|never) (?:give |gave |have |give you |gave you )?(?:my )?"
        r"(?:consent|permission)\b(?! to (?:be |being |the )?record)",
    ),
    # a clause that is only "stop" (and filler): "please stop", "STOP STOP", "Stop, I paid"
    _rule(
        "bare_stop",
        rf"(?:^|(?<=, ))(?:{_FILLER}(?: ,)? )*(?:stop|stopall|stop all|unsubscribe|opt out|optout"
        rf"|revoke|i revoke)(?: {_TAIL})*(?= ,|$)",
    ),
    # "wrong number": the person reached never consented
    _rule(
        "wrong_number",
        r"\b(?:you have|you got|you ve got|you dialed|you texted|you called|this is|that is"
        r"|it is|it s)(?: the| a)? wrong (?:number|person)\b"
        r"|(?:^|(?<=, ))(?:(?:sorry|hi|hello|um|uh|hey)(?: ,)? )*(?:the |a )?"
        r"wrong (?:number|person)\b",
    ),
    # Spanish basics: "no me llames", "dejen de llamarme", "no quiero mas mensajes"
    _rule(
        "es_no_me",
        r"\bno me (?:vuelva[ns]? a |vuelvas a )?(?:llame[ns]?|llames|llamar|escriba[ns]?"
        r"|escribas|escribir|mande[ns]?|mandes|envie[ns]?|envies|contacte[ns]?|contactes"
        r"|moleste[ns]?|molestes)\b",
    ),
    _rule(
        "es_dejar_de",
        r"\b(?:deje[ns]?|dejar|dejes|paren|pare|para) de (?:llamar|escribir|enviar|mandar"
        r"|molestar|contactar)[^\W_]*",
    ),
    _rule(
        "es_no_quiero",
        r"\bno quiero (?:(?:recibir|mas|que me) )*(?:llamadas|mensajes|correos|llamen"
        r"|escriban|contacten)\b",
    ),
    _rule("es_paz", r"\bdej[^\W_]* en paz\b"),
    _rule(
        "es_bare",
        r"(?:^|(?<=, ))(?:por favor )?(?:alto|basta|parar|baja|detener)(?: ya| por favor)?(?= ,|$)",
    ),
)

# Phrases saying which medium may continue; they limit the TCPA linkage.
_PERMIT_RULES: Final[tuple[_Rule, ...]] = (
    _rule(
        "permit_you_can",
        r"\b(?:you can|you may|you could|feel free to|it s (?:ok|okay|fine) to"
        r"|it is (?:ok|okay|fine) to|please|just|only)(?: still| only| just| always)? "
        + _VBASE
        + r"\b",
    ),
    _rule("permit_imperative", rf"(?:^|, |\bbut |\band |\binstead ){_VBASE} (?:me|us)\b"),
    _rule(
        "permit_fine",
        rf"\b(?:{_NOUNS}|{_VING}|text|e ?mail)(?: (?:are|is|would be|will be))?(?: still)?"
        r" (?:fine|ok|okay|good|better|alright|all right|preferred|welcome)\b",
    ),
    _rule("permit_only", rf"\b(?:{_NOUNS}|text|e ?mail|call) only\b"),
    _rule("permit_only_before", rf"\b(?:only|just)(?: by| via| through)? {_NOUNS}\b"),
    _rule(
        "permit_instead",
        rf"\b(?:{_VBASE}|{_NOUNS})(?: me| us)? instead\b"
        rf"|\binstead(?: ,)?(?: please| just)? (?:{_VBASE}|use {_NOUNS}|{_NOUNS})\b",
    ),
    _rule("permit_prefer", rf"\bprefer(?: to be)?(?: {_DET})? (?:{_NOUNS}|{_VING}|text|e ?mail)\b"),
)

# "only stop the calls": the revocation is limited to what it names.
_LIMIT_TO_NAMED: Final = re.compile(
    rf"\bonly (?:stop|quit|cancel|block)\b|\b(?:stop|quit|cease|cancel|block) only\b"
    rf"|\b{_STOP_VERB}(?: the)? (?:{_NOUNS}|{_VING}) only\b"
    # "opt out of calls only": the medium it names, and only that one.
    rf"|\b(?:opt(?:ing|ed)? out|unsubscribe(?: me)?) (?:of|from)(?: {_DET})? {_NOUNS} only\b"
)

# Replies that only say which medium to use ("email only please"): no revocation Parley
# can scope safely on its own, so an agent is asked to look.
_PREFERENCE_ONLY: Final = frozenset({"permit_only", "permit_only_before", "permit_prefer"})


_LOOKBEHIND: Final = 120  # characters; longer than any negation or veto phrase


def _is_negated(sentence: str, start: int, veto: re.Pattern[str] | None) -> bool:
    before = sentence[max(0, start - _LOOKBEHIND) : start].rstrip()
    if start > _LOOKBEHIND:
        before = before.partition(" ")[2]  # drop the word the window cut through
    if _NEGATED_BEFORE.search(before):
        return True
    return veto is not None and veto.search(before) is not None


def _extended_end(sentence: str, end: int) -> int:
    qualifier = _QUALIFIER.match(sentence, end)
    return qualifier.end() if qualifier else end


@dataclass(frozen=True, slots=True)
class _Hit:
    rule: str
    source: tuple[int, int]  # the matched words' range in the reply
    kinds: frozenset[_Kind]


def _hits(
    rules: Iterable[_Rule],
    sentences: list[Sentence],
    kinds_of: Callable[[str], set[_Kind]],
) -> list[_Hit]:
    found: list[_Hit] = []
    for sentence in sentences:
        for rule in rules:
            for match in rule.pattern.finditer(sentence.text):
                if _is_negated(sentence.text, match.start(), rule.veto_before):
                    continue
                end = _extended_end(sentence.text, match.end())
                span = sentence.text[match.start() : end]
                found.append(
                    _Hit(
                        rule=rule.name,
                        source=sentence.source_span(match.start(), end),
                        kinds=frozenset(kinds_of(span)),
                    )
                )
    found.sort(key=lambda hit: hit.source)
    return found


def _evidence(hits: list[_Hit], source: str) -> str:
    """The consumer's words that matched, overlapping matches merged, in reply order."""
    merged: list[list[int]] = []
    for hit in hits:
        start, end = hit.source
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return " | ".join(source[start:end] for start, end in merged if end > start)


def _scope(revocations: list[_Hit], permits: list[_Hit], limited: bool) -> frozenset[Channel]:
    named: set[Channel] = set()
    implied: set[Channel] = set()
    for hit in revocations:
        for kind in hit.kinds:
            kind_named, kind_implied = _named_and_implied(kind)
            named |= kind_named
            implied |= kind_implied
    if limited:
        return frozenset(named)
    permitted: set[Channel] = set()
    for hit in permits:
        for kind in hit.kinds.intersection(_SPECIFIC):
            permitted |= _NAMED[kind]
    return frozenset(named | (implied - permitted))


# --- the classifier -----------------------------------------------------------------------


def classify_reply(text: str, *, channel: Channel) -> ReplyIntent:
    """Classify an inbound reply that arrived on `channel`; see the module docstring."""
    if channel is Channel.EMAIL:
        text = strip_email_quote(text)
    keyword_form, sentences = analyze(text)

    keyword = _KEYWORD_SPELLINGS.get(keyword_form)
    if keyword is not None:
        action = KEYWORDS[keyword]
        if action is ReplyAction.OPT_OUT:
            named, implied = _named_and_implied(_INBOUND_KIND[channel])
            scope = named | implied
        elif action is ReplyAction.OPT_IN:
            scope = frozenset({channel})
        else:
            scope = frozenset()
        return ReplyIntent(
            action=action,
            scope=scope,
            keyword=True,
            needs_agent_review=False,
            matched=keyword,
            rules=("keyword",),
        )

    revocations = _hits(_REVOCATION_RULES, sentences, lambda span: _revoked_kinds(span, channel))
    permits = _hits(_PERMIT_RULES, sentences, _kinds_in)
    if not revocations:
        stated = [hit for hit in permits if hit.rule in _PREFERENCE_ONLY]
        if stated:
            return ReplyIntent(
                action=ReplyAction.NONE,
                needs_agent_review=True,
                matched=_evidence(stated, text),
                rules=tuple(dict.fromkeys(hit.rule for hit in stated)),
            )
        return NO_INTENT
    limited = any(_LIMIT_TO_NAMED.search(sentence.text) is not None for sentence in sentences)
    return ReplyIntent(
        action=ReplyAction.OPT_OUT,
        scope=_scope(revocations, permits, limited),
        keyword=False,
        needs_agent_review=True,
        matched=_evidence(revocations, text),
        rules=tuple(dict.fromkeys(hit.rule for hit in revocations)),
    )
