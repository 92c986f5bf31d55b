"""Message content rules (parley.compliance.content): opt-out notice (Reg F 1006.6(e)),
debt-collector disclosure (FDCPA 807(11), 1006.18(e)), limited-content voicemail
(1006.2(j)) and employer email addresses (1006.6(d)(4), 1006.22(f)(3)).

Example tables for each function, then Hypothesis properties: after `apply_content_rules`
the body always has an opt-out notice (and the disclosure when the policy applies), the
original text is untouched, and a second pass is a no-op; a rendered voicemail contains
nothing but its elements and the fixed connecting words.
"""

from __future__ import annotations

import json
import re
import string
from datetime import datetime
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.compliance.content import (
    CONTACT_POINT_SOURCES,
    DEFAULT_DISCLOSURE_POLICY,
    DEFAULT_OPT_OUT_NOTICE,
    EMPLOYER_EMAIL_ADDRESS,
    INITIAL_DISCLOSURE,
    SUBSEQUENT_DISCLOSURE,
    ContentResult,
    DisclosurePolicy,
    OptOutNotice,
    apply_content_rules,
    employer_email_verdict,
    ensure_disclosure,
    ensure_email_opt_out,
    ensure_opt_out_notice,
    has_disclosure,
    has_opt_out_notice,
    html_visible_text,
)
from parley.compliance.voicemail import (
    DEBT_COLLECTION_PHRASES,
    DEBT_COLLECTION_WORDS,
    REQUEST_TO_REPLY_PHRASES,
    VOICEMAIL_FIELDS,
    LimitedContentVoicemail,
    VoicemailContentError,
    from_mapping,
    render_voicemail,
)
from parley.domain.channels import Channel
from parley.templates import analyze_sms

SMS, WHATSAPP, EMAIL, VOICE = Channel.SMS, Channel.WHATSAPP, Channel.EMAIL, Channel.VOICE
URL = "https://pay.example.test/unsubscribe/abc123"
NOTICE = "Reply STOP to opt out."
OFF = DisclosurePolicy(enabled=False)


# --- opt-out notice: detection ----------------------------------------------------------


def _fullwidth(ascii_text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) for c in ascii_text)


TEXT_NOTICES = [
    "Reply STOP to opt out",
    "Reply STOP to opt out.",
    "reply stop to unsubscribe",
    "REPLY STOP TO UNSUBSCRIBE!!",
    "Text STOP to 12345",
    "Txt STOP",
    "Txt STOP 2 quit",
    "STOP to end",
    "Stop to opt-out.",
    "Msg&data rates may apply. STOP to end",
    "To opt out reply STOP",
    "To opt out, reply STOP.",
    "Opt out: reply STOP",
    "Reply 'STOP' to opt out",
    "Reply “STOP” to stop these messages",
    "Reply with the word STOP to opt out",
    "reply back with STOP",
    "Send STOP to 555-0100 to unsubscribe",
    "Text us STOP anytime",
    "Reply UNSUBSCRIBE to stop texts",
    "Reply OPT-OUT to opt out",
    "Reply CANCEL to cancel texts",
    "Reply END to stop",
    "Reply QUIT to stop",
    "Reply STOPALL to stop",
    "Reply REVOKE to revoke consent",
    "Reply S\u0301TOP to opt out",  # combining accent folded away
    f"{_fullwidth('Reply')} {_fullwidth('STOP')} to opt out",  # compatibility forms
    "Your payment is due Friday.\nReply STOP to opt out.",
    "Responda STOP para cancelar",
    "Don't worry, reply STOP to opt out any time",  # the comma ends the negated clause
    "No texts wanted? Reply STOP",
]

NOT_TEXT_NOTICES = [
    "",
    "please don't stop your payments",
    "Please don't stop your payments.",
    "the bus stop",
    "Meet us at the bus stop",
    "Stop by our office on Monday",
    "STOP",  # a bare keyword is not an instruction
    "Please do not reply STOP",
    "Don't text STOP to this number",
    "Never reply STOP",
    "please reply stop by our office",
    "Reply STOP your payment",  # keyword followed by something an instruction never says
    "Reply to this text to stop autopay",
    "Reply to opt out",  # no keyword: what should they reply?
    "Send the end of month statement",
    "Text me if you want to stop",
    "Stopping payments may affect your account",
    "unsubscribe",  # an email instruction; texts need a reply keyword
    "Opt out at https://example.test/opt-out",
    "Your payment will stop on the 5th",
    "If payment stops, call us",
    "Reply HELP for help",
    "Reply YES to confirm",
    "Text STOPPED",
]

EMAIL_NOTICES = [
    "Unsubscribe",
    "unsubscribe: https://example.test/u/1",
    "Click here to unsubscribe.",
    "To unsubscribe from these emails, click here",
    "Opt out: https://example.test/o",
    "Opt-out",
    "Click to opt out",
    "You can opt out here",
    "Opt out of these emails",
    "opt out of receiving future emails",
    "To stop receiving these emails, click here.",
    "To stop receiving emails about this account, unsubscribe: https://x.test/u",
    "Please stop receiving e-mails by visiting your settings",
    "Stop receiving these messages",
    "Reply STOP to opt out",
    "If you no longer want these emails, reply UNSUBSCRIBE.",
    "https://example.test/unsubscribe?id=7",
]

NOT_EMAIL_NOTICES = [
    "",
    "please don't stop your payments",
    "the bus stop",
    "You cannot unsubscribe from legal notices",
    "You can't unsubscribe from legal notices",
    "Your unsubscribe request was received",
    "You have been unsubscribed",
    "Opt-out of paperless billing is not available",
    "You opted out of paper statements",
    "You will stop receiving emails once the balance is paid",
    "Do not opt out",
    "Never opt out of fraud alerts",
    "Payment options",
]


@pytest.mark.parametrize("channel", [SMS, WHATSAPP, EMAIL])
@pytest.mark.parametrize("text", TEXT_NOTICES)
def test_text_notices_are_recognised_on_every_written_channel(text: str, channel: Channel) -> None:
    assert has_opt_out_notice(text, channel)


@pytest.mark.parametrize("channel", [SMS, WHATSAPP])
@pytest.mark.parametrize("text", NOT_TEXT_NOTICES)
def test_other_text_is_not_a_text_notice(text: str, channel: Channel) -> None:
    assert not has_opt_out_notice(text, channel)


@pytest.mark.parametrize("text", EMAIL_NOTICES)
def test_email_notices(text: str) -> None:
    assert has_opt_out_notice(text, EMAIL)


@pytest.mark.parametrize("text", NOT_EMAIL_NOTICES)
def test_other_text_is_not_an_email_notice(text: str) -> None:
    assert not has_opt_out_notice(text, EMAIL)


def test_email_link_phrases_do_not_count_in_texts() -> None:
    assert has_opt_out_notice("Click here to unsubscribe", EMAIL)
    assert not has_opt_out_notice("Click here to unsubscribe", SMS)


def test_negation_only_reaches_within_a_clause() -> None:
    assert not has_opt_out_notice("Please do not reply STOP", SMS)
    assert has_opt_out_notice("Please do not pay by card.\nReply STOP to opt out.", SMS)
    assert has_opt_out_notice("We will not call you, reply STOP to opt out", SMS)


def test_voice_has_no_opt_out_notice() -> None:
    with pytest.raises(ValueError, match="not to voice"):
        has_opt_out_notice("Reply STOP", VOICE)


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<p>Unsubscribe</p>", True),
        ('<p>To stop emails, <a href="https://x.test/u">unsubscribe</a>.</p>', True),
        ("<p>&#85;nsubscribe</p>", True),  # entities are decoded
        ('<p><a href="https://x.test/unsubscribe">Click here</a></p>', False),  # href only
        ("<!-- unsubscribe --><p>Hello</p>", False),
        ("<script>var unsubscribe = 1;</script><p>Hello</p>", False),
        ("<head><title>Unsubscribe</title></head><body>Hello</body>", False),
        ("<p>Do not</p><p>unsubscribe</p>", True),  # separate blocks, separate clauses
    ],
)
def test_html_detection_reads_the_visible_text(markup: str, expected: bool) -> None:
    assert has_opt_out_notice(markup, EMAIL, html=True) is expected


def test_unparseable_html_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot be parsed"):
        html_visible_text("<p>Hi</p><![bogus[ x")


# --- opt-out notice: configuration ------------------------------------------------------


def test_default_notice_texts() -> None:
    assert DEFAULT_OPT_OUT_NOTICE.sms == "Reply STOP to opt out."
    assert DEFAULT_OPT_OUT_NOTICE.whatsapp == "Reply STOP to opt out."
    text, markup = DEFAULT_OPT_OUT_NOTICE.email_footers(URL)
    assert text == f"To stop receiving emails about this account, unsubscribe: {URL}"
    assert markup == (
        f'<p>To stop receiving emails about this account, <a href="{URL}">unsubscribe</a>.</p>'
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"sms": "Thanks for being a customer."}, "sms is not recognised"),
        ({"whatsapp": "STOP"}, "whatsapp is not recognised"),
        ({"email_text": "Unsubscribe at our website"}, "email_text must contain"),
        ({"email_text": "Hello {unsubscribe_url}"}, "email_text is not recognised"),
        ({"email_html": '<a href="{unsubscribe_url}">Click here</a>'}, "email_html is not"),
    ],
)
def test_a_notice_the_detector_cannot_see_is_refused(change: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        OptOutNotice(**change)


def test_a_custom_notice_is_used() -> None:
    notice = OptOutNotice(sms="Txt STOP 2 end")
    result = ensure_opt_out_notice("Hi", SMS, notice)
    assert result.body == "Hi\nTxt STOP 2 end"
    assert result.added == "Txt STOP 2 end"


# --- opt-out notice: ensuring it on texts -----------------------------------------------


@pytest.mark.parametrize("channel", [SMS, WHATSAPP])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Your payment is due.", f"Your payment is due.\n{NOTICE}"),
        ("Your payment is due.   \n", f"Your payment is due.\n{NOTICE}"),  # trailing space
        ("", NOTICE),
        ("   ", NOTICE),
        ("I will not", f"I will not\n{NOTICE}"),  # own line: no "not reply STOP"
        ("Hi. Reply STOP to opt out.", "Hi. Reply STOP to opt out."),
        ("Hi. Txt STOP", "Hi. Txt STOP"),
        ("Please don't stop your payments.", f"Please don't stop your payments.\n{NOTICE}"),
    ],
)
def test_ensure_opt_out_notice(body: str, expected: str, channel: Channel) -> None:
    result = ensure_opt_out_notice(body, channel)
    assert result.body == expected
    assert result.channel is channel
    assert result.added == (None if expected == body else NOTICE)
    assert result.status == ("present" if expected == body else "added")
    again = ensure_opt_out_notice(result.body, channel)
    assert again.body == result.body
    assert again.added is None


def test_the_separator_costs_one_unit_in_gsm7_and_in_ucs2() -> None:
    for body in ("a" * 120, "Grüße, " * 10 + "Anna", "Payment received 👍"):
        result = ensure_opt_out_notice(body, SMS)
        before = analyze_sms(body)
        after = analyze_sms(result.body)
        assert after.encoding == before.encoding  # the default notice is GSM-7
        assert after.units == before.units + 1 + len(NOTICE)


def test_a_notice_that_crosses_a_segment_boundary_is_billed() -> None:
    body = "x" * (160 - len(NOTICE))  # with the separator: 161 septets
    assert analyze_sms(body + " " + NOTICE[:-1]).segments == 1
    assert analyze_sms(ensure_opt_out_notice(body, SMS).body).segments == 2


def test_ensure_opt_out_notice_refuses_voice_and_email() -> None:
    with pytest.raises(ValueError, match="not to voice"):
        ensure_opt_out_notice("Hello", VOICE)
    with pytest.raises(ValueError, match="ensure_email_opt_out"):
        ensure_opt_out_notice("Hello", EMAIL)


def test_notice_record() -> None:
    assert ensure_opt_out_notice("Hi", SMS).as_record() == {
        "rule": "opt_out_notice",
        "citation": "12 CFR 1006.6(e)",
        "channel": "sms",
        "status": "added",
        "added": NOTICE,
    }


# --- opt-out notice: email --------------------------------------------------------------

TEXT_FOOTER = f"To stop receiving emails about this account, unsubscribe: {URL}"
HTML_FOOTER = (
    f'<p>To stop receiving emails about this account, <a href="{URL}">unsubscribe</a>.</p>'
)


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        (
            "<html><body><p>Hi</p></body></html>",
            f"<html><body><p>Hi</p>{HTML_FOOTER}\n</body></html>",
        ),
        (
            "<HTML><BODY><p>Hi</p></BODY ></HTML>",
            f"<HTML><BODY><p>Hi</p>{HTML_FOOTER}\n</BODY ></HTML>",
        ),
        ("<p>Hi</p>", f"<p>Hi</p>\n{HTML_FOOTER}"),
        ("<p>Hi</p>\n\n", f"<p>Hi</p>\n{HTML_FOOTER}"),
        ("", HTML_FOOTER),
        # The last </body> is the real one (an earlier one may be inside a comment).
        (
            "<body><!-- </body> --><p>Hi</p></body>",
            f"<body><!-- </body> --><p>Hi</p>{HTML_FOOTER}\n</body>",
        ),
    ],
)
def test_html_footer_placement(markup: str, expected: str) -> None:
    result = ensure_email_opt_out("Hi", markup, URL)
    assert result.html == expected
    assert result.html_added == HTML_FOOTER
    assert has_opt_out_notice(expected, EMAIL, html=True)


def test_email_text_footer() -> None:
    result = ensure_email_opt_out("Hi Bob,\n\nYour balance is due.\n", None, URL)
    assert result.text == f"Hi Bob,\n\nYour balance is due.\n\n{TEXT_FOOTER}"
    assert result.text_added == TEXT_FOOTER
    assert result.html is None
    assert result.html_added is None
    assert "html" not in result.as_record()


def test_each_email_part_is_checked_on_its_own() -> None:
    text = "Hi. Unsubscribe: https://x.test/u"
    markup = "<body><p>Hi</p></body>"
    result = ensure_email_opt_out(text, markup, URL)
    assert result.text == text
    assert result.text_added is None
    assert result.html_added == HTML_FOOTER
    assert result.as_record()["text"] == {"status": "present", "added": None}
    assert result.as_record()["html"] == {"status": "added", "added": HTML_FOOTER}

    result = ensure_email_opt_out("Hi", "<p>Unsubscribe</p>", URL)
    assert result.html == "<p>Unsubscribe</p>"
    assert result.text_added == TEXT_FOOTER


def test_an_href_alone_is_not_a_clear_notice_so_a_footer_is_added() -> None:
    markup = '<body><a href="https://x.test/unsubscribe">Click here</a></body>'
    assert ensure_email_opt_out("Hi", markup, URL).html_added == HTML_FOOTER


def test_email_opt_out_is_idempotent() -> None:
    first = ensure_email_opt_out("Hi", "<body>Hi</body>", URL)
    second = ensure_email_opt_out(first.text, first.html, URL)
    assert (second.text, second.html) == (first.text, first.html)
    assert second.text_added is None
    assert second.html_added is None


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value for name, value in attrs if name == "href"]


@pytest.mark.parametrize(
    "url",
    [
        "https://x.test/unsubscribe?id=1&sig=2",
        'https://x.test/u?q="quoted"&x=<y>',
        "https://x.test/u?name=O'Brien",
        "mailto:optout@x.test?subject=unsubscribe&body=1",
        "http://x.test/u#frag",
    ],
)
def test_the_url_is_escaped_in_the_href_and_literal_in_the_text(url: str) -> None:
    result = ensure_email_opt_out("Hi", "<body></body>", url)
    assert result.html_added is not None
    assert "&" not in url or "&amp;" in result.html_added
    for raw in '<>"':
        assert raw not in url or url not in result.html_added
    parser = _Hrefs()
    parser.feed(result.html_added)
    assert parser.hrefs == [url]  # a browser reads back exactly the URL we were given
    assert result.text_added == f"To stop receiving emails about this account, unsubscribe: {url}"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,unsubscribe",
        "ftp://x.test/u",
        "https:///no-host",
        "https://x.test/a b",
        "https://x.test/u\r\nBcc: victim@x.test",
        "//x.test/u",
        "unsubscribe",
    ],
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsubscribe_url"):
        ensure_email_opt_out("Hi", "<p>Hi</p>", url)


@pytest.mark.parametrize(
    "markup",
    [
        "<p>Hi</p><!-- unclosed comment",
        "<p>Hi</p><script>var x = 1;",
        "<p>Hi</p><![bogus[",
    ],
)
def test_html_where_a_footer_would_be_hidden_is_refused(markup: str) -> None:
    with pytest.raises(ValueError, match="HTML part"):
        ensure_email_opt_out("Hi", markup, URL)


# --- disclosure -------------------------------------------------------------------------


def test_default_disclosure_texts_follow_807_11() -> None:
    assert INITIAL_DISCLOSURE == (
        "This is an attempt to collect a debt and any information obtained will be used "
        "for that purpose. This communication is from a debt collector."
    )
    assert SUBSEQUENT_DISCLOSURE == "This communication is from a debt collector."
    assert DEFAULT_DISCLOSURE_POLICY.enabled
    assert DEFAULT_DISCLOSURE_POLICY.channels == {EMAIL, SMS, WHATSAPP}
    assert has_disclosure(INITIAL_DISCLOSURE, initial=True)
    assert has_disclosure(INITIAL_DISCLOSURE, initial=False)
    assert has_disclosure(SUBSEQUENT_DISCLOSURE, initial=False)
    assert not has_disclosure(SUBSEQUENT_DISCLOSURE, initial=True)


@pytest.mark.parametrize(
    ("text", "initial", "subsequent"),
    [
        (INITIAL_DISCLOSURE, True, True),
        (INITIAL_DISCLOSURE.upper(), True, True),
        (
            "We are attempting to collect a debt, and any information obtained will be used "
            "for that purpose.",
            True,
            False,
        ),
        (
            "This communication is an attempt to collect the debt; any information we obtain "
            "will be used for that purpose.",
            True,
            False,
        ),
        ("This is an attempt to collect a debt.", False, False),  # purpose clause missing
        ("Any information obtained will be used for that purpose.", False, False),
        ("This communication is from a debt collector.", False, True),
        ("This message is from a debt collector", False, True),
        ("We are a debt collector.", False, True),
        ("Sent by a debt collector", False, True),
        ("THIS COMMUNICATION IS FROM A DEBT-COLLECTOR", False, True),
        # Negated: the usual bankruptcy disclaimer is the opposite of a disclosure.
        (
            "This is not an attempt to collect a debt and any information obtained will be "
            "used for that purpose.",
            False,
            False,
        ),
        ("This communication is not from a debt collector.", False, False),
        ("We are not a debt collector.", False, False),
        ("Our debt collector partner will call.", False, False),
        ("Please pay your debt.", False, False),
        ("", False, False),
    ],
)
def test_has_disclosure(text: str, initial: bool, subsequent: bool) -> None:
    assert has_disclosure(text, initial=True) is initial
    assert has_disclosure(text, initial=False) is subsequent


@pytest.mark.parametrize("channel", [SMS, WHATSAPP, EMAIL])
def test_ensure_disclosure_initial_and_subsequent(channel: Channel) -> None:
    sep = "\n\n" if channel is EMAIL else "\n"
    first = ensure_disclosure("Hello.", channel, first_communication=True)
    assert first.body == f"Hello.{sep}{INITIAL_DISCLOSURE}"
    assert (first.kind, first.applies, first.added) == ("initial", True, INITIAL_DISCLOSURE)
    later = ensure_disclosure("Hello.", channel, first_communication=False)
    assert later.body == f"Hello.{sep}{SUBSEQUENT_DISCLOSURE}"
    assert (later.kind, later.added, later.status) == ("subsequent", SUBSEQUENT_DISCLOSURE, "added")


def test_a_first_communication_needs_the_full_disclosure() -> None:
    body = "Hello. This communication is from a debt collector."
    assert ensure_disclosure(body, SMS, first_communication=False).added is None
    assert ensure_disclosure(body, SMS, first_communication=True).added == INITIAL_DISCLOSURE


def test_disclosure_already_present_is_not_repeated() -> None:
    body = f"Hello.\n{INITIAL_DISCLOSURE}"
    for first in (True, False):
        result = ensure_disclosure(body, SMS, first_communication=first)
        assert result.body == body
        assert result.status == "present"


def test_disabled_policy_and_uncovered_channels_add_nothing() -> None:
    result = ensure_disclosure("Hello.", SMS, first_communication=True, policy=OFF)
    assert (result.body, result.applies, result.status) == ("Hello.", False, "not_applicable")
    email_only = DisclosurePolicy(channels=frozenset({EMAIL}))
    assert ensure_disclosure("Hi", SMS, first_communication=True, policy=email_only).added is None
    assert ensure_disclosure("Hi", EMAIL, first_communication=True, policy=email_only).added
    assert not ensure_disclosure("Hi", VOICE, first_communication=True).applies


def test_custom_disclosure_texts() -> None:
    policy = DisclosurePolicy(
        initial_text="We are attempting to collect a debt. Any information obtained will be "
        "used for that purpose.",
        subsequent_text="We are a debt collector.",
    )
    later = ensure_disclosure("Hi", SMS, first_communication=False, policy=policy)
    assert later.body == "Hi\nWe are a debt collector."


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"channels": frozenset({VOICE})}, "voice"),
        ({"initial_text": "This communication is from a debt collector."}, "initial_text"),
        ({"subsequent_text": "Hello from Northwind."}, "subsequent_text"),
        ({"subsequent_text": "This is not from a debt collector."}, "subsequent_text"),
    ],
)
def test_invalid_disclosure_policies(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        DisclosurePolicy(**kwargs)  # type: ignore[arg-type]


def test_a_disabled_policy_may_leave_the_texts_empty() -> None:
    policy = DisclosurePolicy(enabled=False, initial_text="", subsequent_text="")
    assert policy.as_record() == {
        "enabled": False,
        "initialText": "",
        "subsequentText": "",
        "channels": ["email", "sms", "whatsapp"],
    }


# --- apply_content_rules ----------------------------------------------------------------


def test_sms_rules_in_order_and_record() -> None:
    result = apply_content_rules("Hi Bob, your balance is due.", SMS, first_communication=True)
    assert result.body == f"Hi Bob, your balance is due.\n{INITIAL_DISCLOSURE}\n{NOTICE}"
    assert result.html is None
    assert result.changed
    record = result.as_record()
    assert json.loads(json.dumps(record)) == record
    assert record == {
        "channel": "sms",
        "firstCommunication": True,
        "changed": True,
        "checks": [
            {
                "rule": "debt_collector_disclosure",
                "citation": "15 USC 1692e(11) (FDCPA 807(11)); 12 CFR 1006.18(e)",
                "part": "text",
                "status": "added",
                "added": INITIAL_DISCLOSURE,
                "kind": "initial",
            },
            {
                "rule": "opt_out_notice",
                "citation": "12 CFR 1006.6(e)",
                "part": "text",
                "status": "added",
                "added": NOTICE,
            },
        ],
    }


def test_email_rules_on_both_parts() -> None:
    result = apply_content_rules(
        "Hi",
        EMAIL,
        first_communication=False,
        html="<html><body><p>Hi</p></body></html>",
        unsubscribe_url=URL,
    )
    assert result.body == f"Hi\n\n{SUBSEQUENT_DISCLOSURE}\n\n{TEXT_FOOTER}"
    assert result.html == (
        f"<html><body><p>Hi</p><p>{SUBSEQUENT_DISCLOSURE}</p>\n{HTML_FOOTER}\n</body></html>"
    )
    checks = [(c.rule, c.part, c.status) for c in result.checks]
    assert checks == [
        ("debt_collector_disclosure", "text", "added"),
        ("debt_collector_disclosure", "html", "added"),
        ("opt_out_notice", "text", "added"),
        ("opt_out_notice", "html", "added"),
    ]
    assert json.loads(json.dumps(result.as_record())) == result.as_record()


def test_disclosure_text_is_escaped_in_html() -> None:
    policy = DisclosurePolicy(subsequent_text="This communication is from a debt collector <&>.")
    result = apply_content_rules(
        "Hi", EMAIL, first_communication=False, policy=policy, html="<p>Hi</p>", unsubscribe_url=URL
    )
    assert result.html is not None
    assert "<p>This communication is from a debt collector &lt;&amp;&gt;.</p>" in result.html


def test_email_without_html() -> None:
    result = apply_content_rules("Hi", EMAIL, first_communication=True, unsubscribe_url=URL)
    assert result.html is None
    assert [c.part for c in result.checks] == ["text", "text"]


def test_disabled_policy_still_gets_the_opt_out_notice() -> None:
    result = apply_content_rules("Hi", SMS, first_communication=True, policy=OFF)
    assert result.body == f"Hi\n{NOTICE}"
    assert result.checks[0].status == "not_applicable"
    markup = apply_content_rules(
        "Hi", EMAIL, first_communication=True, policy=OFF, html="<p>Hi</p>", unsubscribe_url=URL
    )
    assert [c.status for c in markup.checks] == [
        "not_applicable",
        "not_applicable",
        "added",
        "added",
    ]


def test_nothing_added_when_everything_is_present() -> None:
    body = f"Hi.\n{SUBSEQUENT_DISCLOSURE}\nTxt STOP to end"
    result = apply_content_rules(body, WHATSAPP, first_communication=False)
    assert result.body == body
    assert not result.changed
    assert [c.status for c in result.checks] == ["present", "present"]


@pytest.mark.parametrize(
    ("channel", "kwargs", "problem"),
    [
        (VOICE, {}, "not to voice"),
        (EMAIL, {}, "unsubscribe_url"),
        (EMAIL, {"unsubscribe_url": "javascript:x"}, "unsubscribe_url"),
        (SMS, {"html": "<p>Hi</p>"}, "email only"),
        (WHATSAPP, {"unsubscribe_url": URL}, "email only"),
    ],
)
def test_apply_content_rules_refuses_misuse(
    channel: Channel, kwargs: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        apply_content_rules("Hi", channel, first_communication=True, **kwargs)  # type: ignore[arg-type]


def test_hidden_html_disclosure_is_refused() -> None:
    with pytest.raises(ValueError, match="HTML part"):
        apply_content_rules(
            "Hi", EMAIL, first_communication=True, html="<p>Hi<!-- x", unsubscribe_url=URL
        )


def test_markup_whose_meaning_changes_when_the_footer_is_added_is_refused() -> None:
    # Read alone, the unterminated "<?php" is text and the disclosure is present; once
    # the footer is appended, "<?php ... <p>" is one bogus comment (as in a browser) and
    # the disclosure disappears. The final parts are re-checked, so this is caught.
    markup = "<?php This communication is from a debt collector."
    assert has_disclosure(html_visible_text(markup), initial=False)
    with pytest.raises(ValueError, match="HTML part is malformed: the disclosure"):
        apply_content_rules(
            "Hi", EMAIL, first_communication=False, html=markup, unsubscribe_url=URL
        )


def _camel_keys(value: object) -> bool:
    if isinstance(value, dict):
        return all(
            re.fullmatch(r"[a-z][a-zA-Z]*", key) and _camel_keys(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return all(_camel_keys(item) for item in value)
    return True


_BODIES = st.text(max_size=300) | st.sampled_from(
    [*TEXT_NOTICES, *NOT_TEXT_NOTICES, *EMAIL_NOTICES, INITIAL_DISCLOSURE, "I will not", "not"]
)
_POLICIES = st.sampled_from(
    [DEFAULT_DISCLOSURE_POLICY, OFF, DisclosurePolicy(channels=frozenset({EMAIL}))]
)


def _wellformed_html(text: str, wrap: bool) -> str:
    from html import escape

    inner = f"<p>{escape(text)}</p>"
    return f"<html><body>{inner}</body></html>" if wrap else inner


def _check_result(
    body: str,
    result: ContentResult,
    channel: Channel,
    first: bool,
    policy: DisclosurePolicy,
    html_in: str | None,
) -> None:
    assert has_opt_out_notice(result.body, channel)
    assert result.body.startswith(body.rstrip())  # the author's words are kept as written
    if policy.applies_to(channel):
        assert has_disclosure(result.body, initial=first)
    if html_in is not None:
        assert result.html is not None
        assert has_opt_out_notice(result.html, channel, html=True)
        if policy.applies_to(channel):
            assert has_disclosure(html_visible_text(result.html), initial=first)
    record = result.as_record()
    assert json.loads(json.dumps(record)) == record
    assert _camel_keys(record)


@settings(max_examples=400, deadline=None)
@given(
    body=_BODIES,
    channel=st.sampled_from([SMS, WHATSAPP, EMAIL]),
    first=st.booleans(),
    policy=_POLICIES,
    html_text=st.none() | st.tuples(st.text(max_size=200), st.booleans()),
)
def test_property_rules_hold_and_a_second_pass_is_a_no_op(
    body: str,
    channel: Channel,
    first: bool,
    policy: DisclosurePolicy,
    html_text: tuple[str, bool] | None,
) -> None:
    html_in = None
    kwargs: dict[str, str] = {}
    if channel is EMAIL:
        kwargs["unsubscribe_url"] = URL
        if html_text is not None:
            html_in = _wellformed_html(*html_text)
            kwargs["html"] = html_in
    result = apply_content_rules(body, channel, first_communication=first, policy=policy, **kwargs)
    _check_result(body, result, channel, first, policy, html_in)

    if channel is EMAIL and result.html is not None:
        kwargs["html"] = result.html
    again = apply_content_rules(
        result.body, channel, first_communication=first, policy=policy, **kwargs
    )
    assert again.body == result.body
    assert again.html == result.html
    assert not again.changed


@settings(max_examples=300, deadline=None)
@given(body=st.text(max_size=100), markup=st.text(max_size=200), first=st.booleans())
def test_property_arbitrary_html_is_either_made_compliant_or_refused(
    body: str, markup: str, first: bool
) -> None:
    try:
        result = apply_content_rules(
            body, EMAIL, first_communication=first, html=markup, unsubscribe_url=URL
        )
    except ValueError:
        return  # malformed markup is reported, never sent without a visible notice
    _check_result(body, result, EMAIL, first, DEFAULT_DISCLOSURE_POLICY, markup)
    again = apply_content_rules(
        result.body, EMAIL, first_communication=first, html=result.html, unsubscribe_url=URL
    )
    assert (again.body, again.html, again.changed) == (result.body, result.html, False)


# --- limited-content voicemail ----------------------------------------------------------


def _vm(**changes: object) -> LimitedContentVoicemail:
    fields: dict[str, object] = {
        "business_name": "Northwind Services",
        "request_to_reply": "Please return our call",
        "contact_names": ("Jane Doe",),
        "callback_numbers": ("+1 555 010 0199",),
    }
    fields.update(changes)
    return LimitedContentVoicemail(**fields)  # type: ignore[arg-type]


def _errors(**changes: object) -> list[tuple[str, str]]:
    with pytest.raises(VoicemailContentError) as caught:
        _vm(**changes)
    return caught.value.errors


def test_minimal_voicemail() -> None:
    assert render_voicemail(_vm()) == (
        "This is Jane Doe from Northwind Services. Please return our call at +1 555 010 0199."
    )


def test_full_voicemail() -> None:
    vm = _vm(
        salutation="Bob Smith",
        date_time_of_message="Monday, March 3 at 10:15 a.m.",
        suggested_reply_times="weekdays between 9 a.m. and 5 p.m. Eastern",
        any_representative=True,
        contact_names=("Jane Doe", "John Roe", "Mary-Ann O'Neil"),
        callback_numbers=("+1 555 010 0199", "(555) 010-0100"),
    )
    assert render_voicemail(vm) == (
        "Hello Bob Smith. This is Jane Doe from Northwind Services on Monday, March 3 at "
        "10:15 a.m. Please return our call at +1 555 010 0199 or (555) 010-0100, weekdays "
        "between 9 a.m. and 5 p.m. Eastern. You can ask for Jane Doe, John Roe or "
        "Mary-Ann O'Neil. You may speak to any of our representatives."
    )


@pytest.mark.parametrize(
    ("moment", "spoken"),
    [
        (datetime(2025, 3, 3, 10, 15), "Monday, March 3 at 10:15 AM"),
        (datetime(2025, 3, 8, 14, 5), "Saturday, March 8 at 2:05 PM"),
        (datetime(2025, 12, 25, 0, 0), "Thursday, December 25 at 12:00 AM"),
        (datetime(2025, 7, 4, 12, 30), "Friday, July 4 at 12:30 PM"),
    ],
)
def test_stamped_date_and_time(moment: datetime, spoken: str) -> None:
    script = render_voicemail(_vm(date_time_of_message=True), message_time=moment)
    assert script == (
        f"This is Jane Doe from Northwind Services on {spoken}. "
        "Please return our call at +1 555 010 0199."
    )


def test_a_stamped_time_needs_the_time_and_is_ignored_otherwise() -> None:
    with pytest.raises(ValueError, match="message_time"):
        render_voicemail(_vm(date_time_of_message=True))
    moment = datetime(2025, 3, 3, 10, 15)
    assert render_voicemail(_vm(), message_time=moment) == render_voicemail(_vm())


@pytest.mark.parametrize("phrase", REQUEST_TO_REPLY_PHRASES)
def test_each_request_phrase(phrase: str) -> None:
    assert f"{phrase} at +1 555 010 0199." in render_voicemail(_vm(request_to_reply=phrase))


def test_request_phrase_is_matched_loosely_and_stored_as_listed() -> None:
    vm = _vm(request_to_reply="  please CALL us back. ")
    assert vm.request_to_reply == "Please call us back"


def test_whitespace_and_line_breaks_are_tidied() -> None:
    vm = _vm(contact_names=("Jane\nDoe",), business_name=" Northwind   Services ")
    assert vm.contact_names == ("Jane Doe",)
    assert vm.business_name == "Northwind Services"
    assert "\n" not in render_voicemail(vm)


@pytest.mark.parametrize("word", sorted(DEBT_COLLECTION_WORDS))
def test_every_debt_word_is_refused_in_a_business_name(word: str) -> None:
    for name in (f"Northwind {word}", f"{word.upper()} Partners", f"{word.title()} Group"):
        assert _errors(business_name=name)[0][0] == "businessName"


@pytest.mark.parametrize("phrase", sorted(DEBT_COLLECTION_PHRASES))
def test_every_debt_phrase_is_refused_in_a_business_name(phrase: tuple[str, str]) -> None:
    errors = _errors(business_name=f"{phrase[0].title()} {phrase[1].title()} Solutions")
    assert errors == [
        ("businessName", f"must not indicate debt collection (contains '{' '.join(phrase)}')")
    ]


@pytest.mark.parametrize(
    "name",
    ["DebtCo", "NorthwindCollections LLC", "Past-Due Partners", "ABC Recovery, Inc.", "OVERDUE"],
)
def test_debt_words_are_found_inside_camel_case_and_punctuation(name: str) -> None:
    assert _errors(business_name=name)[0][0] == "businessName"


@pytest.mark.parametrize(
    "name",
    [
        "Northwind Services",
        "Collective Design Group",  # word-based: "collective" is not "collect"
        "Owens & Sons",
        "Due North Partners",
        "Credit Union Services",
        "Acme 24/7".replace("/", " "),
        "O'Brien Associates, Inc.",
    ],
)
def test_neutral_business_names_pass(name: str) -> None:
    assert _vm(business_name=name).business_name == name


def test_all_debt_words_are_named() -> None:
    assert _errors(business_name="Debt Collectors Inc") == [
        ("businessName", "must not indicate debt collection (contains 'debt', 'collectors')")
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"business_name": ""}, [("businessName", "is required")]),
        ({"business_name": "N" * 81}, [("businessName", "must be at most 80 characters")]),
        (
            {"business_name": "Northwind <b>"},
            [("businessName", "must be a business name: letters, digits, spaces and . , ' & -")],
        ),
        (
            {"business_name": "1234"},
            [("businessName", "must be a business name: letters, digits, spaces and . , ' & -")],
        ),
        (
            {"request_to_reply": "Call us about your overdue account"},
            [("requestToReply", "must be one of: " + "; ".join(REQUEST_TO_REPLY_PHRASES))],
        ),
        (
            {"request_to_reply": ""},
            [("requestToReply", "must be one of: " + "; ".join(REQUEST_TO_REPLY_PHRASES))],
        ),
        ({"contact_names": ()}, [("contactNames", "must list at least one")]),
        (
            {"contact_names": ("A b", "C d", "E f", "G h")},
            [("contactNames", "must list at most 3")],
        ),
        ({"contact_names": ("Jane Doe 2",)}, [("contactNames[0]", "must not contain digits")]),
        (
            {"contact_names": ("Jane Doe", "J" * 61)},
            [("contactNames[1]", "must be at most 60 characters")],
        ),
        (
            {"contact_names": ("Jane@Doe",)},
            [
                (
                    "contactNames[0]",
                    "must be a person's name: letters, spaces, hyphens, apostrophes and periods",
                )
            ],
        ),
        (
            {"contact_names": ("J",)},
            [
                (
                    "contactNames[0]",
                    "must be a person's name: letters, spaces, hyphens, apostrophes and periods",
                )
            ],
        ),
        (
            {"contact_names": ("Jane Collector",)},
            [("contactNames[0]", "must be a person's name, not 'collector'")],
        ),
        ({"contact_names": ("",)}, [("contactNames[0]", "must not be empty")]),
        ({"callback_numbers": ()}, [("callbackNumbers", "must list at least one")]),
        (
            {"callback_numbers": ("5550100", "5550101", "5550102", "5550103")},
            [("callbackNumbers", "must list at most 3")],
        ),
        (
            {"callback_numbers": ("555-0100 ext 5",)},
            [("callbackNumbers[0]", "may contain only digits, spaces, a leading + and ( ) -")],
        ),
        (
            {"callback_numbers": ("555+0100",)},
            [("callbackNumbers[0]", "may contain only digits, spaces, a leading + and ( ) -")],
        ),
        ({"callback_numbers": ("555 010",)}, [("callbackNumbers[0]", "must have 7 to 15 digits")]),
        (
            {"callback_numbers": ("+1 555 010 0199 00000",)},
            [("callbackNumbers[0]", "must have 7 to 15 digits")],
        ),
        ({"callback_numbers": ("",)}, [("callbackNumbers[0]", "must not be empty")]),
        ({"salutation": "Bob 2"}, [("salutation", "must not contain digits")]),
        ({"salutation": ""}, [("salutation", "must not be empty")]),
        (
            {"date_time_of_message": "Monday about your account"},
            [("includeDateTime", "may contain only days, dates and times, not 'about'")],
        ),
        (
            {"suggested_reply_times": "weekdays, $50 due"},
            [("suggestedReplyTimes", "may contain only days, dates and times")],
        ),
        (
            {"suggested_reply_times": "weekdays before 5 pm regarding payment"},
            [("suggestedReplyTimes", "may contain only days, dates and times, not 'regarding'")],
        ),
        (
            {"suggested_reply_times": "at 5550100"},
            [("suggestedReplyTimes", "may contain only days, dates and times, not '5550100'")],
        ),
        (
            {"suggested_reply_times": "any time " * 12},
            [("suggestedReplyTimes", "must be at most 100 characters")],
        ),
        ({"suggested_reply_times": ""}, [("suggestedReplyTimes", "must not be empty")]),
    ],
)
def test_each_validation_error(changes: dict[str, object], expected: list[tuple[str, str]]) -> None:
    assert _errors(**changes) == expected


def test_all_problems_are_reported_at_once() -> None:
    errors = _errors(
        business_name="Acme Debt Recovery",
        request_to_reply="Pay now",
        contact_names=("Jane Doe", "R2D2"),
        callback_numbers=("12",),
        salutation="Mr. 5",
        suggested_reply_times="tomorrow, or else",
    )
    assert [field for field, _ in errors] == [
        "businessName",
        "requestToReply",
        "contactNames[1]",
        "callbackNumbers[0]",
        "salutation",
        "suggestedReplyTimes",
    ]
    with pytest.raises(ValueError, match=r"1006\.2\(j\).*businessName.*suggestedReplyTimes"):
        _vm(business_name="Acme Debt Recovery", suggested_reply_times="or else")


@pytest.mark.parametrize(
    "times",
    [
        "weekdays between 9 am and 5 pm",
        "Mon-Fri 9:00-17:00 ET",
        "any time before 8 p.m. your local time",
        "Tuesday or Thursday afternoons",
        "on March 3rd after noon",
        "between 9 and 5 on weekdays",
        "3/14 at 10 o'clock",
    ],
)
def test_time_vocabulary(times: str) -> None:
    assert _vm(suggested_reply_times=times).suggested_reply_times == times.rstrip(".")


# --- from_mapping -----------------------------------------------------------------------

GOOD = {
    "businessName": "Northwind Services",
    "requestToReply": True,
    "contactNames": ["Jane Doe"],
    "callbackNumbers": ["+1 555 010 0199"],
}


def _mapping_errors(data: object) -> list[tuple[str, str]]:
    with pytest.raises(VoicemailContentError) as caught:
        from_mapping(data)  # type: ignore[arg-type]
    return caught.value.errors


def test_from_mapping_minimal_and_full() -> None:
    assert from_mapping(GOOD) == _vm()
    full = {
        **GOOD,
        "requestToReply": "please call us back",
        "contactNames": ["Jane Doe", "John Roe"],
        "salutation": "Bob Smith",
        "includeDateTime": True,
        "suggestedReplyTimes": "weekdays after 9 am",
        "anyRepresentative": True,
    }
    vm = from_mapping(full)
    assert vm == _vm(
        request_to_reply="Please call us back",
        contact_names=("Jane Doe", "John Roe"),
        salutation="Bob Smith",
        date_time_of_message=True,
        suggested_reply_times="weekdays after 9 am",
        any_representative=True,
    )
    assert from_mapping({**GOOD, "includeDateTime": "Monday at 9 am"}).date_time_of_message == (
        "Monday at 9 am"
    )
    assert from_mapping({**GOOD, "salutation": None, "suggestedReplyTimes": None}) == _vm()
    assert set(VOICEMAIL_FIELDS) == set(full)


def test_unknown_keys_are_each_refused() -> None:
    errors = _mapping_errors(
        {**GOOD, "accountNumber": "1234", "amountDue": 50, "message": "Call about your debt"}
    )
    assert [field for field, _ in errors] == ["accountNumber", "amountDue", "message"]
    assert all("is not an element" in message for _, message in errors)


def test_missing_required_fields() -> None:
    assert _mapping_errors({}) == [
        ("businessName", "is required"),
        ("requestToReply", "is required"),
        ("contactNames", "is required"),
        ("callbackNumbers", "is required"),
    ]


def test_wrong_types_are_reported_once_each() -> None:
    errors = _mapping_errors(
        {
            "businessName": 7,
            "requestToReply": 1,
            "contactNames": "Jane Doe",
            "callbackNumbers": ["+1 555 010 0199", 5550100, "12"],
            "salutation": ["Bob"],
            "includeDateTime": 3,
            "suggestedReplyTimes": 9,
            "anyRepresentative": "yes",
        }
    )
    assert errors == [
        ("businessName", "must be a string"),
        ("requestToReply", "must be true or one of the allowed phrases"),
        ("contactNames", "must be a list of strings"),
        ("callbackNumbers[1]", "must be a string"),
        ("salutation", "must be a string"),
        ("suggestedReplyTimes", "must be a string"),
        ("includeDateTime", "must be true, false or a written date and time"),
        ("anyRepresentative", "must be true or false"),
        ("callbackNumbers[2]", "must have 7 to 15 digits"),  # index kept after a bad item
    ]


def test_request_to_reply_false_is_refused() -> None:
    assert _mapping_errors({**GOOD, "requestToReply": False}) == [
        ("requestToReply", "must be true: a limited-content voicemail asks for a reply")
    ]


def test_mapping_errors_combine_unknown_keys_and_content() -> None:
    errors = _mapping_errors(
        {**GOOD, "businessName": "Debt Co", "contactNames": [], "reference": "A-1"}
    )
    assert errors == [
        ("reference", errors[0][1]),
        ("businessName", "must not indicate debt collection (contains 'debt')"),
        ("contactNames", "must list at least one"),
    ]


def test_not_a_mapping() -> None:
    assert _mapping_errors(["businessName"]) == [("", "must be a JSON object")]


def test_voicemail_error_is_a_value_error() -> None:
    error = VoicemailContentError([("businessName", "is required")])
    assert error.errors == [("businessName", "is required")]
    assert isinstance(error, ValueError)
    assert str(error) == (
        "not a limited-content voicemail (Reg F 1006.2(j)): businessName: is required"
    )


# The words `render_voicemail` itself may contribute; everything else must be an element.
SKELETON = {"hello", "this", "is", "from", "on", "at", "or", "you", "can", "ask", "for"}
SKELETON |= {"may", "speak", "to", "any", "of", "our", "representatives"}

_NAME = st.builds(
    lambda first, last: f"{first} {last}",
    st.text(string.ascii_letters, min_size=2, max_size=12).map(str.title),
    st.text(string.ascii_letters, min_size=2, max_size=12).map(str.title),
).filter(lambda n: not any(w.casefold() in DEBT_COLLECTION_WORDS for w in n.split()))
_NUMBER = st.text("0123456789", min_size=7, max_size=15).map(lambda d: f"+{d}")
_BUSINESS = st.sampled_from(["Northwind Services", "Contoso", "Fabrikam & Co", "Blue Sky LLC"])
_TIMES = st.sampled_from(["weekdays after 9 am", "Mon-Fri 9-5", "tomorrow morning", None])


@settings(max_examples=200, deadline=None)
@given(
    business=_BUSINESS,
    request=st.sampled_from(REQUEST_TO_REPLY_PHRASES),
    names=st.lists(_NAME, min_size=1, max_size=3),
    numbers=st.lists(_NUMBER, min_size=1, max_size=3),
    salutation=st.none() | _NAME,
    when=st.booleans() | st.sampled_from(["Monday at 10 am", "March 3 at 2 pm"]),
    times=_TIMES,
    anyone=st.booleans(),
)
def test_property_the_script_holds_only_its_elements(
    business: str,
    request: str,
    names: list[str],
    numbers: list[str],
    salutation: str | None,
    when: bool | str,
    times: str | None,
    anyone: bool,
) -> None:
    vm = LimitedContentVoicemail(
        business_name=business,
        request_to_reply=request,
        contact_names=tuple(names),
        callback_numbers=tuple(numbers),
        salutation=salutation,
        date_time_of_message=when,
        suggested_reply_times=times,
        any_representative=anyone,
    )
    moment = datetime(2025, 3, 3, 10, 15)
    script = render_voicemail(vm, message_time=moment)
    elements = [business, request, *names, *numbers]
    elements += [e for e in (salutation, times) if e]
    if when is True:
        elements.append("Monday, March 3 at 10:15 AM")
    elif when:
        elements.append(when)
    for element in elements:
        assert element in script
    rest = script
    if anyone:
        rest = rest.replace("You may speak to any of our representatives.", " ")
    else:
        assert "representatives" not in script
    for element in sorted(elements, key=len, reverse=True):
        rest = rest.replace(element, " ")
    leftover = {w.casefold() for w in re.findall(r"[A-Za-z]+", rest)}
    assert leftover <= SKELETON, leftover
    assert not re.search(r"\d", rest)  # no digit that is not part of an element
    assert "\n" not in script


def test_the_script_never_mentions_debt_or_the_account() -> None:
    script = render_voicemail(
        _vm(salutation="Bob", suggested_reply_times="weekdays", any_representative=True)
    )
    for word in ("debt", "collect", "account", "balance", "payment", "owe"):
        assert word not in script.casefold()


# --- employer email addresses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "label", "used", "consented", "expected"),
    [
        ("employer", None, False, False, EMPLOYER_EMAIL_ADDRESS),
        ("employer_provided", None, False, False, EMPLOYER_EMAIL_ADDRESS),
        (" Employer ", None, False, False, EMPLOYER_EMAIL_ADDRESS),
        ("borrower_provided", "work", False, False, EMPLOYER_EMAIL_ADDRESS),
        ("skip_trace", "WORK", False, False, EMPLOYER_EMAIL_ADDRESS),
        ("employer", "work", True, False, None),  # the consumer used it about the debt
        ("employer", None, False, True, None),  # the consumer consented
        ("employer_provided", "work", True, True, None),
        ("borrower_provided", None, False, False, None),
        ("borrower_provided", "personal", False, False, None),
        ("creditor_provided", "home", False, False, None),
        ("skip_trace", None, False, False, None),
        ("other", "other", False, False, None),
    ],
)
def test_employer_email_verdict(
    source: str, label: str | None, used: bool, consented: bool, expected: str | None
) -> None:
    verdict = employer_email_verdict(
        source=source, label=label, consumer_used_for_debt=used, consumer_consented=consented
    )
    assert verdict == expected


def test_recorded_sources_match_the_contact_point_api() -> None:
    from parley.services.contacts import SOURCES

    assert set(SOURCES) <= CONTACT_POINT_SOURCES
    assert any(
        employer_email_verdict(
            source=s, label=None, consumer_used_for_debt=False, consumer_consented=False
        )
        for s in SOURCES
    )
