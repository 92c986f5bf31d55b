"""Limited-content voicemail (Reg F 1006.2(j)): a voicemail holding only the allowed
elements -- and nothing else -- is not a "communication" (it may be heard by others).

Required: a business name that does not indicate debt collection, a request to reply,
the name(s) of person(s) to contact, callback number(s). Allowed: a salutation, the date
and time of the message, suggested times to reply, "you may speak to any of our
representatives". `LimitedContentVoicemail` holds exactly those elements (validated,
every problem reported at once with its field), `from_mapping` reads the API's camelCase
object and refuses any other key, and `render_voicemail` composes the script from the
elements alone. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Final

__all__ = [
    "DEBT_COLLECTION_PHRASES",
    "DEBT_COLLECTION_WORDS",
    "REQUEST_TO_REPLY_PHRASES",
    "VOICEMAIL_FIELDS",
    "LimitedContentVoicemail",
    "VoicemailContentError",
    "from_mapping",
    "render_voicemail",
]

_WORD: Final = re.compile(r"[^\W_]+")


#: Words that give a business name away as a debt collector (1006.2(j)(1)(i)), matched as
#: whole words, case-insensitively, after splitting CamelCase ("DebtCo" -> "debt co").
#: Deliberately broad: a rejected trade name costs a rename; an accepted one that reveals
#: the debt turns the voicemail into a third-party disclosure risk.
DEBT_COLLECTION_WORDS: Final = frozenset(
    {
        "debt",
        "debts",
        "debtor",
        "debtors",
        "collect",
        "collects",
        "collecting",
        "collection",
        "collections",
        "collector",
        "collectors",
        "recover",
        "recovers",
        "recovery",
        "recoveries",
        "arrear",
        "arrears",
        "delinquent",
        "delinquency",
        "delinquencies",
        "overdue",
        "owe",
        "owed",
        "owes",
        "owing",
        "receivable",
        "receivables",
        "repossession",
        "repossessions",
        "garnishment",
        "garnishments",
        "chargeoff",
        "chargeoffs",
    }
)
#: Two-word phrases with the same effect ("Past Due Solutions", "Credit Bureau Services").
DEBT_COLLECTION_PHRASES: Final = frozenset(
    {("past", "due"), ("credit", "bureau"), ("credit", "bureaus"), ("charge", "off")}
)

#: The request to reply (1006.2(j)(1)(ii)): one of these, each followed by "at <number>".
REQUEST_TO_REPLY_PHRASES: Final = (
    "Please return our call",
    "Please call us back",
    "Please call us",
    "Please give us a call back",
)

#: The JSON keys `from_mapping` accepts: the elements 1006.2(j) allows, nothing else.
VOICEMAIL_FIELDS: Final = (
    "businessName",
    "requestToReply",
    "contactNames",
    "callbackNumbers",
    "salutation",
    "includeDateTime",
    "suggestedReplyTimes",
    "anyRepresentative",
)
_REQUIRED_FIELDS: Final = frozenset(VOICEMAIL_FIELDS[:4])

_MAX_NAME: Final = 60
_MAX_BUSINESS_NAME: Final = 80
_MAX_TIMES_TEXT: Final = 100
_MAX_CONTACTS: Final = 3
_MIN_DIGITS, _MAX_DIGITS = 7, 15  # E.164 allows 15; 7 is the shortest local number we dial

_CAMEL: Final = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NAME_SHAPE: Final = re.compile(r"[^\W\d_](?:[^\W\d_]|[ '\u2019.\-])*")
_BUSINESS_SHAPE: Final = re.compile(r"[^\W_](?:[^\W_]|[ '\u2019.,&\-])*")
_NUMBER_SHAPE: Final = re.compile(r"\+?[0-9 ()\-]+")

_DAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS: Final = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
# The vocabulary of suggested reply times and a written date/time (1006.2(j)(2)(ii)-(iii)):
# days, dates, times, ranges and time zones. Anything else ("about your account", "$50")
# would be content the rule does not allow.
_TIME_WORDS: Final = frozenset(
    {
        *_DAYS,
        *(f"{day}s" for day in _DAYS),
        *_MONTHS,
        *("mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun"),
        *("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"),
        *("weekday", "weekdays", "weekend", "weekends", "today", "tomorrow", "tonight"),
        *("morning", "mornings", "afternoon", "afternoons", "evening", "evenings"),
        *("noon", "midday", "am", "pm", "o", "clock", "st", "nd", "rd", "th"),
        *("between", "and", "or", "from", "to", "until", "till", "through", "thru", "after"),
        *("before", "at", "on", "by", "in", "of", "the", "any", "anytime", "time", "times"),
        *("day", "days", "daily", "every", "this", "next", "week", "business", "hours"),
        *("during", "local", "your", "our", "eastern", "central", "mountain", "pacific"),
        *("et", "est", "edt", "ct", "cst", "cdt", "mt", "mst", "mdt", "pt", "pst", "pdt"),
    }
)
_MERIDIEM: Final = re.compile(r"\b([ap])\.\s?m\b\.?")  # "a.m." / "p. m" -> "am" / "pm"
_TIMES_SHAPE: Final = re.compile(r"[a-z0-9 ,:/'\u2019.\-\u2013]+")


class VoicemailContentError(ValueError):
    """A voicemail that would not be limited-content. ``errors`` lists every problem as
    (field, message), fields named as in the JSON object (``contactNames[1]``)."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors: list[tuple[str, str]] = list(errors)
        detail = "; ".join(f"{name}: {message}" for name, message in self.errors)
        super().__init__(f"not a limited-content voicemail (Reg F 1006.2(j)): {detail}")


def _tidy(text: str) -> str:
    return " ".join(text.split())


def _debt_words(text: str) -> list[str]:
    words = [w.casefold() for w in _WORD.findall(_CAMEL.sub(" ", text)) if not w.isdigit()]
    found = [w for w in words if w in DEBT_COLLECTION_WORDS]
    found += [f"{a} {b}" for a, b in pairwise(words) if (a, b) in DEBT_COLLECTION_PHRASES]
    return found


def _name_problems(value: str) -> list[str]:
    if not value:
        return ["must not be empty"]
    problems = []
    if len(value) > _MAX_NAME:
        problems.append(f"must be at most {_MAX_NAME} characters")
    if any(c.isdigit() for c in value):
        problems.append("must not contain digits")
    elif _NAME_SHAPE.fullmatch(value) is None or sum(c.isalpha() for c in value) < 2:
        problems.append(
            "must be a person's name: letters, spaces, hyphens, apostrophes and periods"
        )
    if found := _debt_words(value):
        problems.append(f"must be a person's name, not {found[0]!r}")
    return problems


def _business_problems(value: str) -> list[str]:
    if not value:
        return ["is required"]
    problems = []
    if len(value) > _MAX_BUSINESS_NAME:
        problems.append(f"must be at most {_MAX_BUSINESS_NAME} characters")
    if _BUSINESS_SHAPE.fullmatch(value) is None or not any(c.isalpha() for c in value):
        problems.append("must be a business name: letters, digits, spaces and . , ' & -")
    if found := _debt_words(value):
        # 1006.2(j)(1)(i): the name must not indicate that the business collects debts.
        words = ", ".join(repr(word) for word in dict.fromkeys(found))
        problems.append(f"must not indicate debt collection (contains {words})")
    return problems


def _number_problems(value: str) -> list[str]:
    if not value:
        return ["must not be empty"]
    if _NUMBER_SHAPE.fullmatch(value) is None:
        return ["may contain only digits, spaces, a leading + and ( ) -"]
    digits = sum(c.isdigit() for c in value)
    if not _MIN_DIGITS <= digits <= _MAX_DIGITS:
        return [f"must have {_MIN_DIGITS} to {_MAX_DIGITS} digits"]
    return []


def _times_problems(value: str) -> list[str]:
    if not value:
        return ["must not be empty"]
    if len(value) > _MAX_TIMES_TEXT:
        return [f"must be at most {_MAX_TIMES_TEXT} characters"]
    folded = _MERIDIEM.sub(r"\1m", value.lower())
    if _TIMES_SHAPE.fullmatch(folded) is None:
        return ["may contain only days, dates and times"]
    unknown = [
        token
        for token in re.findall(r"[a-z]+|[0-9]+", folded)
        if (token.isdigit() and len(token) > 4) or (token.isalpha() and token not in _TIME_WORDS)
    ]
    if unknown:
        return [f"may contain only days, dates and times, not {unknown[0]!r}"]
    return []


def _without_end_punctuation(text: str) -> str:
    return text.rstrip(" .")


def _canonical_request(text: str) -> str | None:
    wanted = _tidy(text).casefold().rstrip(".")
    for phrase in REQUEST_TO_REPLY_PHRASES:
        if phrase.casefold() == wanted:
            return phrase
    return None


_Problems = list[tuple[str, str]]


def _list_problems(
    name: str, values: Sequence[str | None], check: Callable[[str], list[str]]
) -> _Problems:
    problems: _Problems = []
    if not values:
        problems.append((name, "must list at least one"))
    elif len(values) > _MAX_CONTACTS:
        problems.append((name, f"must list at most {_MAX_CONTACTS}"))
    for index, value in enumerate(values):
        if value is not None:
            problems += [(f"{name}[{index}]", m) for m in check(value)]
    return problems


def _element_problems(
    *,
    business_name: str | None,
    request_to_reply: str | None,
    contact_names: Sequence[str | None] | None,
    callback_numbers: Sequence[str | None] | None,
    salutation: str | None,
    date_time: str | None,
    suggested_reply_times: str | None,
) -> _Problems:
    """Every problem with tidied element values, in field order; None skips a check."""
    problems: _Problems = []
    if business_name is not None:
        problems += [("businessName", m) for m in _business_problems(business_name)]
    if request_to_reply is not None and _canonical_request(request_to_reply) is None:
        allowed = "; ".join(REQUEST_TO_REPLY_PHRASES)
        problems.append(("requestToReply", f"must be one of: {allowed}"))
    if contact_names is not None:
        problems += _list_problems("contactNames", contact_names, _name_problems)
    if callback_numbers is not None:
        problems += _list_problems("callbackNumbers", callback_numbers, _number_problems)
    if salutation is not None:
        problems += [("salutation", m) for m in _name_problems(salutation)]
    if date_time is not None:
        problems += [("includeDateTime", m) for m in _times_problems(date_time)]
    if suggested_reply_times is not None:
        problems += [("suggestedReplyTimes", m) for m in _times_problems(suggested_reply_times)]
    return problems


def _tidy_times(text: str | None) -> str | None:
    return None if text is None else _without_end_punctuation(_tidy(text))


@dataclass(frozen=True, slots=True)
class LimitedContentVoicemail:
    """The elements of a limited-content voicemail (Reg F 1006.2(j)) -- and only those.

    Required (1006.2(j)(1)): `business_name`, not indicating debt collection (see
    `DEBT_COLLECTION_WORDS`); `request_to_reply`, one of `REQUEST_TO_REPLY_PHRASES`
    (matched case-insensitively, stored as listed); `contact_names`, 1-3 natural persons;
    `callback_numbers`, 1-3 numbers of 7-15 digits. Optional (1006.2(j)(2)): `salutation`
    (a person's name); `date_time_of_message` (True: stamped from the time given to
    `render_voicemail`, or a written date/time); `suggested_reply_times` (days, dates and
    times vocabulary only); `any_representative`.

    Whitespace runs (line breaks included) become single spaces, so nothing can smuggle
    extra lines into a text-to-speech script. Every problem is reported at once in a
    `VoicemailContentError`, fields named as in the JSON object.
    """

    business_name: str
    request_to_reply: str
    contact_names: tuple[str, ...]
    callback_numbers: tuple[str, ...]
    salutation: str | None = None
    date_time_of_message: bool | str = False
    suggested_reply_times: str | None = None
    any_representative: bool = False

    def __post_init__(self) -> None:
        tidy: dict[str, object] = {
            "business_name": _tidy(self.business_name),
            "contact_names": tuple(_tidy(v) for v in self.contact_names),
            "callback_numbers": tuple(_tidy(v) for v in self.callback_numbers),
            "salutation": None if self.salutation is None else _tidy(self.salutation),
            "suggested_reply_times": _tidy_times(self.suggested_reply_times),
        }
        if isinstance(self.date_time_of_message, str):
            tidy["date_time_of_message"] = _tidy_times(self.date_time_of_message)
        for name, value in tidy.items():
            object.__setattr__(self, name, value)
        problems = _element_problems(
            business_name=self.business_name,
            request_to_reply=self.request_to_reply,
            contact_names=self.contact_names,
            callback_numbers=self.callback_numbers,
            salutation=self.salutation,
            date_time=self.date_time_of_message
            if isinstance(self.date_time_of_message, str)
            else None,
            suggested_reply_times=self.suggested_reply_times,
        )
        if problems:
            raise VoicemailContentError(problems)
        object.__setattr__(self, "request_to_reply", _canonical_request(self.request_to_reply))


def _join(items: Sequence[str], conjunction: str = "or") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def _spoken_time(moment: datetime) -> str:
    # English names spelled out: strftime's %A/%B follow the process locale.
    hour = moment.hour % 12 or 12
    meridiem = "AM" if moment.hour < 12 else "PM"
    day = _DAYS[moment.weekday()].capitalize()
    month = _MONTHS[moment.month - 1].capitalize()
    return f"{day}, {month} {moment.day} at {hour}:{moment.minute:02d} {meridiem}"


def render_voicemail(vm: LimitedContentVoicemail, *, message_time: datetime | None = None) -> str:
    """The voicemail script, composed only from `vm`'s elements in a fixed order.

    "Hello {salutation}. This is {first contact} from {business}[ on {date/time}].
    {request to reply} at {numbers}[, {suggested times}]. [You can ask for {contacts}.]
    [You may speak to any of our representatives.]"

    Nothing else may be added -- not by this function, not by the caller (no account
    reference, no amount, no disclosure): 1006.2(j) allows these elements and nothing else,
    and one extra word makes the voicemail a "communication" left where others may hear
    it. `message_time` (the consumer's local time) is used only when
    ``date_time_of_message is True``, which then requires it.
    """
    sentences: list[str] = []
    if vm.salutation:
        sentences.append(f"Hello {vm.salutation}.")
    when = ""
    if vm.date_time_of_message is True:
        if message_time is None:
            raise ValueError("date_time_of_message is True: pass message_time")
        when = f" on {_spoken_time(message_time)}"
    elif isinstance(vm.date_time_of_message, str) and vm.date_time_of_message:
        when = f" on {vm.date_time_of_message}"
    sentences.append(f"This is {vm.contact_names[0]} from {vm.business_name}{when}.")
    reply = f"{vm.request_to_reply} at {_join(vm.callback_numbers)}"
    if vm.suggested_reply_times:
        reply += f", {vm.suggested_reply_times}"
    sentences.append(f"{reply}.")
    if len(vm.contact_names) > 1:
        sentences.append(f"You can ask for {_join(vm.contact_names)}.")
    if vm.any_representative:
        sentences.append("You may speak to any of our representatives.")
    return " ".join(sentences)


def from_mapping(data: Mapping[str, object]) -> LimitedContentVoicemail:
    """A voicemail from its camelCase JSON object; every problem in one VoicemailContentError.

    Keys other than `VOICEMAIL_FIELDS` are refused, each with its own error: the point of
    the object is that it can hold only what 1006.2(j) allows. ``requestToReply`` is one of
    `REQUEST_TO_REPLY_PHRASES` or ``true`` (the first phrase); ``includeDateTime`` is a
    boolean or a written date/time; ``salutation`` and ``suggestedReplyTimes`` may be null.
    """
    if not isinstance(data, Mapping):
        raise VoicemailContentError([("", "must be a JSON object")])
    errors: _Problems = []
    allowed = ", ".join(VOICEMAIL_FIELDS)
    for key in data:
        if key not in VOICEMAIL_FIELDS:
            message = f"is not an element a limited-content voicemail may contain ({allowed})"
            errors.append((str(key), message))
    for key in VOICEMAIL_FIELDS:
        if key in _REQUIRED_FIELDS and data.get(key) is None:
            errors.append((key, "is required"))

    # Each reader returns the value to check, or None when it is missing or of the wrong
    # type (already reported, so not checked again).
    def text(key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            errors.append((key, "must be a string"))
            return None
        return value

    def texts(key: str) -> list[str | None] | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, Sequence):
            errors.append((key, "must be a list of strings"))
            return None
        items: list[str | None] = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                items.append(_tidy(item))
            else:
                errors.append((f"{key}[{index}]", "must be a string"))
                items.append(None)
        return items

    def flag(key: str) -> bool:
        value = data.get(key, False)
        if isinstance(value, bool):
            return value
        errors.append((key, "must be true or false"))
        return False

    business = text("businessName")
    request: str | None = None
    raw_request = data.get("requestToReply")
    if raw_request is True:
        request = REQUEST_TO_REPLY_PHRASES[0]
    elif raw_request is False:
        # 1006.2(j)(1)(ii): the request to reply is required, not optional.
        errors.append(
            ("requestToReply", "must be true: a limited-content voicemail asks for a reply")
        )
    elif isinstance(raw_request, str):
        request = raw_request
    elif raw_request is not None:
        errors.append(("requestToReply", "must be true or one of the allowed phrases"))
    names = texts("contactNames")
    numbers = texts("callbackNumbers")
    salutation = text("salutation")
    suggested = text("suggestedReplyTimes")
    raw_when = data.get("includeDateTime")
    when: bool | str = False
    if isinstance(raw_when, bool | str):
        when = raw_when
    elif raw_when is not None:
        errors.append(("includeDateTime", "must be true, false or a written date and time"))
    any_rep = flag("anyRepresentative")

    errors += _element_problems(
        business_name=None if business is None else _tidy(business),
        request_to_reply=request,
        contact_names=names,
        callback_numbers=numbers,
        salutation=None if salutation is None else _tidy(salutation),
        date_time=_tidy_times(when) if isinstance(when, str) else None,
        suggested_reply_times=_tidy_times(suggested),
    )
    if errors:
        raise VoicemailContentError(errors)
    assert business is not None and request is not None  # required: reported above if not
    return LimitedContentVoicemail(
        business_name=business,
        request_to_reply=request,
        contact_names=tuple(name for name in names or () if name is not None),
        callback_numbers=tuple(number for number in numbers or () if number is not None),
        salutation=salutation,
        date_time_of_message=when,
        suggested_reply_times=suggested,
        any_representative=any_rep,
    )
