"""Opt-out by reply (issue 4, section 3): carrier keywords and free-text revocations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.compliance.optout import (
    ALL_MEDIA,
    CONFIRMATION_TEXTS,
    HELP_TEXT,
    KEYWORDS,
    PHONE_MEDIA,
    ReplyAction,
    ReplyIntent,
    classify_reply,
    confirmation_text,
    describe_scope,
    match_keyword,
    normalize,
)
from parley.domain.channels import Channel

SMS, WHATSAPP, VOICE, EMAIL = Channel.SMS, Channel.WHATSAPP, Channel.VOICE, Channel.EMAIL
PHONE = PHONE_MEDIA
ALL = ALL_MEDIA
ONLY_EMAIL = frozenset({EMAIL})
ONLY_VOICE = frozenset({VOICE})
TEXTS = frozenset({SMS, WHATSAPP})

OPT_OUT, OPT_IN, HELP, NONE = (
    ReplyAction.OPT_OUT,
    ReplyAction.OPT_IN,
    ReplyAction.HELP,
    ReplyAction.NONE,
)

# The two-word spellings the module accepts besides the keywords themselves.
SPELLINGS = {
    **{keyword: keyword for keyword in KEYWORDS},
    "OPT OUT": "OPTOUT",
    "opt-out": "OPTOUT",
    "Opt_Out": "OPTOUT",
    "STOP ALL": "STOPALL",
}


# --- exact keywords -----------------------------------------------------------------------


def test_the_keyword_lists_are_the_carrier_defaults() -> None:
    assert {k for k, a in KEYWORDS.items() if a is OPT_OUT} == {
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
    }
    assert {k for k, a in KEYWORDS.items() if a is OPT_IN} == {"START", "YES", "UNSTOP"}
    assert {k for k, a in KEYWORDS.items() if a is HELP} == {"HELP", "INFO"}


DECORATIONS = [
    "{}",
    " {} ",
    "{}!",
    "{}.",
    "  {}!!! ",
    "\t{}\n",
    '"{}"',
    "«{}»",
    "¡{}!",
    "...{}?",
    "({})",
    "{} 🛑",
    "🙏 {} 🙏",
    "{}\ufe0f",  # a stray variation selector
    "\u200b{}\u200b",  # zero-width spaces
    "{}\u00a0",  # no-break space
    "*{}*",
    "- {} -",
]


def casings(word: str) -> list[str]:
    return [word.upper(), word.lower(), word.title(), word.swapcase(), word[:1] + word[1:].lower()]


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize("channel", list(Channel))
def test_every_keyword_in_any_case_with_punctuation(spelling: str, channel: Channel) -> None:
    canonical = SPELLINGS[spelling]
    action = KEYWORDS[canonical]
    for cased in casings(spelling):
        for decoration in DECORATIONS:
            text = decoration.format(cased)
            intent = classify_reply(text, channel=channel)
            assert intent.action is action, text
            assert intent.keyword, text
            assert not intent.needs_agent_review, text
            assert intent.matched == canonical, text
            assert match_keyword(text) == canonical, text


def test_fullwidth_and_accented_keyword_letters_are_folded() -> None:
    assert match_keyword("\uff33\uff34\uff2f\uff30") == "STOP"  # fullwidth STOP
    assert match_keyword("ST\u00d3P") == "STOP"  # STÓP
    assert match_keyword("\uff28\uff25\uff2c\uff30\uff01") == "HELP"


@pytest.mark.parametrize(
    ("channel", "scope"),
    [(SMS, PHONE), (WHATSAPP, PHONE), (VOICE, PHONE), (EMAIL, ONLY_EMAIL)],
)
def test_keyword_opt_out_scope_follows_the_tcpa_linkage(
    channel: Channel, scope: frozenset[Channel]
) -> None:
    # compliance.md TCPA: revoking texts revokes calls and vice versa; email stands apart.
    for word in ("STOP", "unsubscribe", "Cancel", "end", "quit", "REVOKE", "opt out", "stopall"):
        assert classify_reply(word, channel=channel).scope == scope


@pytest.mark.parametrize("channel", list(Channel))
def test_opt_in_restores_only_the_channel_it_came_in_on(channel: Channel) -> None:
    for word in ("START", "yes", "Unstop!"):
        intent = classify_reply(word, channel=channel)
        assert intent.action is OPT_IN
        assert intent.scope == frozenset({channel})


@pytest.mark.parametrize(
    ("text", "keyword"), [("HELP", "HELP"), ("info?", "INFO"), ("Help!", "HELP")]
)
def test_help_changes_no_consent(text: str, keyword: str) -> None:
    intent = classify_reply(text, channel=SMS)
    assert intent == ReplyIntent(HELP, frozenset(), True, False, keyword, ("keyword",))


@pytest.mark.parametrize(
    "text",
    [
        "yes I can pay friday",
        "Yes, call me",
        "yes please send the link",
        "Start the plan next month",
        "START date for the plan?",
        "help me understand the balance",
        "HELP ME",
        "info about my account please",
        "Can I get the info on my balance?",
        "🛑",
        "👍",
        "stop 2",
        "S T O P",
        "yesterday",
        "stopping by later",
        "ending",
        "",
        "   ",
        "?!",
    ],
)
def test_keywords_only_count_as_the_whole_message(text: str) -> None:
    intent = classify_reply(text, channel=SMS)
    assert not intent.keyword
    assert intent.action in (OPT_OUT, NONE)  # free text never opts in or asks for help
    assert match_keyword(text) is None


# --- free text ----------------------------------------------------------------------------

# (text, channel, expected scope)
POSITIVES: list[tuple[str, Channel, frozenset[Channel]]] = [
    ("stop texting me", SMS, PHONE),
    ("Please stop texting me", SMS, PHONE),
    ("please don't call me again", SMS, PHONE),
    ("Don't call me anymore", VOICE, PHONE),
    ("leave me alone", SMS, ALL),
    ("Leave me the hell alone!", SMS, ALL),
    ("do not contact me", SMS, ALL),
    ("Do not contact me again about this debt", EMAIL, ALL),
    ("remove me from your list", SMS, PHONE),
    ("Take me off your call list", SMS, PHONE),
    ("stop emailing me", EMAIL, ONLY_EMAIL),
    ("Please stop sending me emails", EMAIL, ONLY_EMAIL),
    ("stop emailing me", SMS, ONLY_EMAIL),  # names the medium, whatever it came in on
    ("no more messages", SMS, PHONE),
    ("No more messages please", EMAIL, ONLY_EMAIL),
    ("I revoke consent", SMS, PHONE),
    ("I revoke my consent to be contacted", SMS, PHONE),
    ("I withdraw my permission for you to text me", SMS, PHONE),
    ("stop calling me", SMS, PHONE),
    ("quit calling my phone", SMS, PHONE),
    ("STOP CALLING ME!!!", SMS, PHONE),
    ("Stop harassing me", SMS, ALL),
    ("stop bothering me with these texts", SMS, PHONE),
    ("Don't call me, text me instead", SMS, ONLY_VOICE),
    ("stop calling me, texting is fine", SMS, ONLY_VOICE),
    ("Stop texting me, you can call", SMS, TEXTS),
    ("only stop the calls", SMS, ONLY_VOICE),
    ("no more calls please", SMS, PHONE),
    ("I don't want any more calls", SMS, PHONE),
    ("I do not want to be contacted", SMS, ALL),
    ("unsubscribe me", SMS, PHONE),
    ("Unsubscribe me from these emails", EMAIL, ONLY_EMAIL),
    ("how do I opt out?", SMS, PHONE),
    ("opt me out", WHATSAPP, PHONE),
    ("Wrong number", SMS, PHONE),
    ("you have the wrong person", SMS, PHONE),
    ("I think you have the wrong number", SMS, PHONE),
    ("please stop", SMS, PHONE),
    ("STOP STOP STOP", SMS, PHONE),
    ("Stop. I already paid this.", SMS, PHONE),
    ("stop please", SMS, PHONE),
    ("Stop, I will call you when I get paid", SMS, PHONE),
    ("cease and desist", EMAIL, ALL),
    ("never text me again", SMS, PHONE),
    ("I told you not to call me", SMS, PHONE),
    ("Why can't you stop calling me?", SMS, PHONE),
    ("Stop calling my work", SMS, PHONE),
    ("enough with the calls", SMS, PHONE),
    ("do not call or text me", SMS, PHONE),
    ("stop calling and emailing me", SMS, ALL),
    ("Lose my number", SMS, PHONE),
    ("put me on your do not call list", SMS, PHONE),
    ("I do not consent to these calls", SMS, PHONE),
    ("stop messaging me", WHATSAPP, PHONE),
    ("Stop sending me whatsapp messages, texts are fine", WHATSAPP, frozenset({WHATSAPP, VOICE})),
    ("this is John, stop calling me", VOICE, PHONE),
    ("please remove my email from your mailing list", EMAIL, ONLY_EMAIL),
    ("Do not contact me by phone or email", SMS, ALL),
    ("Stop contacting me by email", SMS, ONLY_EMAIL),
    ("please stop sending me text messages", SMS, PHONE),
    ("I asked you to stop texting me last week", SMS, PHONE),
    ("u need to stop txting me", SMS, PHONE),
    ("Pls dont text me", SMS, PHONE),
    ("don't email me at work", SMS, ONLY_EMAIL),
    ("I don\u2019t want you calling me", SMS, PHONE),  # typographic apostrophe
    ("DO NOT CALL THIS NUMBER", SMS, PHONE),
    ("no me llames más", SMS, PHONE),
    ("dejen de llamarme por favor", SMS, PHONE),
    ("déjenme en paz", SMS, ALL),
    ("No quiero más mensajes", SMS, PHONE),
    ("ALTO", SMS, PHONE),
    ("you guys need to stop", SMS, PHONE),
    ("I already told you to stop", SMS, PHONE),
    ("Stop sending these", SMS, PHONE),
    ("Please end these calls", SMS, PHONE),
    ("end all communication", EMAIL, ALL),
    ("Cancel my text alerts", SMS, PHONE),
    ("I want the calls to stop", SMS, PHONE),
    ("I'm sick of your calls", SMS, PHONE),
    ("I'm not going to pay, stop calling me", SMS, PHONE),
    ("Stop calling. Email only.", SMS, PHONE),  # email only: no texts either
    ("stop texting me, only email", SMS, PHONE),
]

NEGATIVES: list[str] = [
    "I can't stop worrying about this debt",
    "when does the payment plan end?",
    "I will pay, don't cancel my plan",
    "yes I can pay friday",
    "help me understand the balance",
    "Can you call me tomorrow after 5?",
    "Please call me back",
    "text me the payment link",
    "I sent the email yesterday",
    "Did you get my payment?",
    "I want to set up a payment plan",
    "Can we stop the late fees?",
    "Please stop the automatic withdrawal",
    "how do I stop autopay",
    "I need to cancel my payment for friday and reschedule",
    "End of the month works for me",
    "I quit my job so I can't pay right now",
    "Don't worry, I will pay",
    "start the payment plan next week",
    "Why did you stop calling me? I wanted to talk",
    "Please don't stop sending me reminders, they help",
    "I never got your text",
    "I didn't get the email",
    "I don't have email, please text me",
    "No problem, call me at 3",
    "no thanks, I already paid",
    "I got no texts from you last month",
    "There are no more messages in my app",
    "I'll stop by the office tomorrow",
    "the calls stopped after I paid, thanks",
    "I'll call you when I get paid",
    "Is it ok if I email you the documents?",
    "Texting is the best way to reach me",
    "my phone was off, sorry I missed your call",
    "please cancel the payment I scheduled for tomorrow",
    "I want to revoke the autopay authorization",
    "Leave a message if I don't answer",
    "contact me after 6pm please",
    "You never call me back when you say you will",
    "you did not call me back",
    "I had to end the call because I was at work",
    "I don't text much, email is better",
    "I gave you the wrong number earlier, here is my new one",
    "I do not consent to being recorded",
    "I don't want to opt out, I just need more time",
    "Stop payment was placed on the check by my bank",
    "no more money until friday sorry",
    "Is this the end of my debt?",
    "Quit playing, how much do I owe",
    "Can I stop the payment plan and pay in full?",
    "I stopped getting your texts, can you resend?",
    "do not send the letter to my old address",
    "can you text me the info instead of emailing",
    "Me llamo Juan, quiero pagar",
    "No me llegó el mensaje",
    "Remove the late fee please and I'll pay today",
    "I'm tired of paying these fees",
    "I'm sick of this debt",
    "end the call",
    "you need to stop the late fees",
    "I need the payments to stop coming out twice",
    "please don't cancel the reminders",
    "Can you end my payment plan early if I pay in full?",
    "cancel my autopay",
    "I'd like to stop by and pay in cash",
    "Will you stop charging me fees?",
    "Not interested",
    "who is this?",
]


def test_the_tables_are_big_enough() -> None:
    assert len(POSITIVES) >= 40
    assert len(NEGATIVES) >= 40


@pytest.mark.parametrize(("text", "channel", "scope"), POSITIVES)
def test_free_text_revocations(text: str, channel: Channel, scope: frozenset[Channel]) -> None:
    intent = classify_reply(text, channel=channel)
    assert intent.action is OPT_OUT, text
    assert intent.scope == scope, (text, sorted(intent.scope))
    assert not intent.keyword
    assert intent.needs_agent_review
    assert intent.matched
    assert intent.matched in text  # the consumer's own words, for the evidence record
    assert intent.rules


@pytest.mark.parametrize("text", NEGATIVES)
@pytest.mark.parametrize("channel", [SMS, EMAIL])
def test_not_revocations(text: str, channel: Channel) -> None:
    assert classify_reply(text, channel=channel) == ReplyIntent(NONE)


def test_evidence_keeps_the_consumers_words_and_the_rules() -> None:
    intent = classify_reply("Hi. Please DON'T call me again, I'm at work!!", channel=SMS)
    assert intent.matched == "DON'T call me again"
    assert intent.rules == ("do_not_contact",)
    assert intent.as_record() == {
        "action": "opt_out",
        "scope": ["sms", "voice", "whatsapp"],
        "keyword": False,
        "needsAgentReview": True,
        "matched": "DON'T call me again",
        "rules": ["do_not_contact"],
    }


def test_time_restrictions_are_reported_as_revocations_for_review() -> None:
    # Documented choice: not parsed into contact hours; an agent turns it into one.
    intent = classify_reply("don't call me before 9am", channel=SMS)
    assert intent.action is OPT_OUT
    assert intent.needs_agent_review


def test_a_limit_never_unrevokes_a_named_medium() -> None:
    intent = classify_reply("stop texting me, text me instead", channel=SMS)
    assert intent.scope >= TEXTS


# --- email replies ------------------------------------------------------------------------


def test_email_keyword_survives_a_mobile_signature() -> None:
    intent = classify_reply("STOP\n\nSent from my iPhone", channel=EMAIL)
    assert intent.keyword
    assert intent.scope == ONLY_EMAIL


def test_our_quoted_opt_out_notice_is_not_the_consumers_words() -> None:
    body = (
        "Thanks, I will pay Friday.\n\n"
        "On Mon, Jan 1, 2024 at 9:00 AM Acme Collections <billing@acme.test> wrote:\n"
        "> Your payment is due. Reply STOP to opt out.\n"
    )
    assert classify_reply(body, channel=EMAIL).action is NONE
    quoted_only = "Sounds good\n> Reply STOP to opt out, or unsubscribe here"
    assert classify_reply(quoted_only, channel=EMAIL).action is NONE


def test_email_reply_above_the_quote_is_read() -> None:
    body = "Please stop emailing me.\n\nOn Tue, Acme wrote:\n> Your balance is $200."
    intent = classify_reply(body, channel=EMAIL)
    assert intent.action is OPT_OUT
    assert intent.scope == ONLY_EMAIL


# --- confirmation texts -------------------------------------------------------------------


def test_one_confirmation_per_action_and_none_for_nothing() -> None:
    assert set(CONFIRMATION_TEXTS) == {OPT_OUT, OPT_IN, HELP}
    assert CONFIRMATION_TEXTS[HELP] == HELP_TEXT
    stop = classify_reply("STOP", channel=SMS)
    assert confirmation_text(stop, organization="Acme") == (
        "You have been unsubscribed from text messages, WhatsApp messages and calls from "
        "Acme. Reply START to resubscribe."
    )
    start = classify_reply("START", channel=SMS)
    assert "resubscribed to text messages from Acme" in (
        confirmation_text(start, organization="Acme") or ""
    )
    helped = confirmation_text(
        classify_reply("HELP", channel=SMS), organization="Acme", help_contact="555-0100"
    )
    assert helped is not None
    assert "555-0100" in helped
    assert "STOP" in helped
    assert confirmation_text(ReplyIntent(NONE), organization="Acme") is None


def test_organization_names_with_braces_are_not_format_fields() -> None:
    text = confirmation_text(classify_reply("stop", channel=EMAIL), organization="{Acme}")
    assert text == "You have been unsubscribed from emails from {Acme}. Reply START to resubscribe."


def test_describe_scope() -> None:
    assert describe_scope([EMAIL]) == "emails"
    assert describe_scope([VOICE, SMS]) == "text messages and calls"
    assert describe_scope([]) == "messages"


# --- normalization ------------------------------------------------------------------------


def test_normalize_folds_and_expands() -> None:
    assert normalize("Don\u2019t TXT me!! Pls.") == "do not text me\nplease"
    assert normalize("No, stop \u2013 I said STOP") == "no , stop , i said stop"
    assert normalize("Déjenme EN PAZ") == "dejenme en paz"


# --- properties ---------------------------------------------------------------------------

# Anything that is neither a letter nor a digit: punctuation, symbols and emoji,
# separators, controls, combining marks and format characters.
non_alphanumeric = st.characters(exclude_categories=("L", "N", "Cs"))
# In an email, a line starting with ">" is quoted text, not the consumer's words (see
# test_our_quoted_opt_out_notice_is_not_the_consumers_words), so for email the
# decoration stays on one line and has no ">".
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
email_non_alphanumeric = st.characters(
    exclude_categories=("L", "N", "Cs"), exclude_characters=LINE_BREAKS + ">"
)


@st.composite
def decorated_keywords(
    draw: st.DrawFn, alphabet: st.SearchStrategy[str] = non_alphanumeric
) -> tuple[str, str]:
    """(canonical keyword, the keyword in random case with random decoration around it)."""
    canonical = draw(st.sampled_from(sorted(KEYWORDS)))
    words = {"OPTOUT": ["OPT", "OUT"], "STOPALL": ["STOP", "ALL"]}.get(canonical)
    if words is not None and draw(st.booleans()):
        body = draw(st.text(alphabet, min_size=1, max_size=3)).join(words)
    else:
        body = canonical
    cased = "".join(ch.lower() if ch.isalpha() and draw(st.booleans()) else ch for ch in body)
    before = draw(st.text(alphabet, max_size=8))
    after = draw(st.text(alphabet, max_size=8))
    return canonical, before + cased + after


def assert_is_keyword(canonical: str, text: str, channel: Channel) -> None:
    intent = classify_reply(text, channel=channel)
    assert intent.keyword, text
    assert intent.matched == canonical, text
    assert intent.action is KEYWORDS[canonical], text
    assert not intent.needs_agent_review


@settings(max_examples=300, deadline=None)
@given(decorated_keywords(), st.sampled_from([SMS, WHATSAPP, VOICE]))
def test_property_a_decorated_keyword_is_that_keyword(
    case: tuple[str, str], channel: Channel
) -> None:
    assert_is_keyword(*case, channel)


@settings(max_examples=150, deadline=None)
@given(decorated_keywords(email_non_alphanumeric))
def test_property_a_decorated_keyword_is_that_keyword_in_email(case: tuple[str, str]) -> None:
    assert_is_keyword(*case, EMAIL)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from(list(Channel)))
def test_property_arbitrary_text_never_raises(text: str, channel: Channel) -> None:
    assert isinstance(normalize(text), str)
    intent = classify_reply(text, channel=channel)
    assert (intent.action is NONE) == (intent == ReplyIntent(NONE))
    if intent.action is OPT_OUT:
        assert intent.scope
    if intent.keyword:
        assert not intent.needs_agent_review
    else:
        assert intent.action in (OPT_OUT, NONE)
    assert intent.matched in text or intent.keyword


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["stop", "calling", "me", ",", "do", "not", "text", " "])))
def test_property_rule_words_in_any_order_never_raise(words: list[str]) -> None:
    classify_reply(" ".join(words), channel=SMS)


def test_odd_input_does_not_raise() -> None:
    for text in ["\ud800stop", "\x00STOP\x00", "ﷺ", "⑴ stop", "ǅ" * 50, "stop " * 2000]:
        normalize(text)
        classify_reply(text, channel=SMS)
        classify_reply(text, channel=EMAIL)


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("opt out of calls only", {Channel.VOICE}),
        ("I want to opt out of calls only", {Channel.VOICE}),
        ("opt out of emails only", {Channel.EMAIL}),
        ("please opt me out of texts", {Channel.SMS, Channel.WHATSAPP, Channel.VOICE}),
    ],
)
def test_an_opt_out_naming_one_medium_only_revokes_that_medium(
    text: str, scope: set[Channel]
) -> None:
    # Review finding: "calls only" used to read as permission to call, so the named
    # medium was the one left open.
    intent = classify_reply(text, channel=SMS)
    assert intent.action is OPT_OUT
    assert intent.scope == frozenset(scope), sorted(intent.scope)


@pytest.mark.parametrize("text", ["email only please", "contact me by email only"])
def test_a_stated_medium_without_a_revocation_is_flagged_for_an_agent(text: str) -> None:
    intent = classify_reply(text, channel=SMS)
    assert intent.action is NONE and intent.scope == frozenset()
    assert intent.needs_agent_review and intent.matched
