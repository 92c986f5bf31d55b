"""The SSRF guard's classifier and URL checks (no traffic leaves the machine)."""

from __future__ import annotations

import ipaddress

import pytest

from parley.webhooks_out import targets

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast-or-reserved"),
    ("192.0.2.10", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::ffff:127.0.0.1", "mapped loopback"),
    ("::ffff:10.0.0.1", "mapped private"),
    ("::ffff:169.254.169.254", "mapped link-local"),
    ("64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"),
    ("2002:c0a8:0101::1", "6to4 of 192.168.1.1"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below 100.64/10
    "100.128.0.1",  # just above
    "172.32.0.1",  # just above 172.16/12
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_public_addresses_are_refused(address, kind):
    assert targets.refusal(ipaddress.ip_address(address)) is not None, kind


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address):
    assert targets.refusal(ipaddress.ip_address(address)) is None


def test_mapped_form_names_the_embedded_address():
    why = targets.refusal(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert why == "embeds 127.0.0.1, which is a loopback address"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://[::1]/hook",
        "http://[::ffff:192.168.0.1]/x",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0x7f.1/",  # 127.0.0.1, abbreviated hex
    ],
)
async def test_urls_reaching_non_public_hosts_are_refused(url):
    with pytest.raises(targets.TargetRefused, match="PARLEY_WEBHOOKS_ALLOW_PRIVATE_TARGETS"):
        await targets.check_url(url, allow_private=False)


async def test_operator_setting_allows_private_targets():
    await targets.check_url("http://127.0.0.1:8080/hook", allow_private=True)
    await targets.check_url("http://10.0.0.5/hook", allow_private=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://8.8.8.8/hook", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://8.8.8.8/", "http or https"),
        ("https:///nohost", "no host"),
        ("http://8.8.8.8:99999/", "not a valid URL"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
async def test_malformed_or_unresolvable_urls_are_refused(url, message):
    with pytest.raises(targets.TargetRefused, match=message):
        await targets.check_url(url, allow_private=False)


async def test_public_literal_url_passes_without_any_lookup():
    await targets.check_url("https://8.8.8.8/hooks/parley", allow_private=False)
