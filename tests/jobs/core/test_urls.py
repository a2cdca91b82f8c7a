"""URL credentials: the public form kept and shown, the identity that stands for the full URL, the request parts."""

from __future__ import annotations

import base64

import pytest

from jobs.core.urls import has_credentials, public_url, redact_urls, request_parts, url_identity


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://user:PASS@host/x.zip", "https://host/x.zip"),
        ("https://TOKEN@host:8443/x.zip", "https://host:8443/x.zip"),
        ("https://host/x.zip?token=T&v=2", "https://host/x.zip?token=***&v=2"),
        ("https://b.s3.amazonaws.com/k?X-Amz-Credential=C&X-Amz-Signature=S&X-Amz-Security-Token=T&x-id=GetObject",
         "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***&x-id=GetObject"),
        ("https://acct.blob.core.windows.net/c/x?sv=2024&sig=S%2B", "https://acct.blob.core.windows.net/c/x?sv=2024&sig=***"),
        ("https://api.example/v1?key=AIza&q=chest", "https://api.example/v1?key=***&q=chest"),
        # no credentials: returned character for character, odd encodings and fragments included
        ("https://host/a%20b.zip?v=1&path=%2Fx#frag", "https://host/a%20b.zip?v=1&path=%2Fx#frag"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ],
)  # fmt: skip
def test_public_url(url, public):
    assert public_url(url) == public
    assert has_credentials(url) == (url != public)


def test_identity_tells_credentials_apart_without_revealing_them():
    # GIVEN the same file with two passwords, and without any
    a, b, plain = "https://u:pw-one@h/x.zip", "https://u:pw-two@h/x.zip", "https://h/x.zip"
    # THEN each has its own identity, which starts with the public URL and holds no password
    assert url_identity(plain) == plain
    assert url_identity(a) != url_identity(b)
    assert url_identity(a).startswith("https://h/x.zip#credentials-scrypt:")
    assert "pw-one" not in url_identity(a) and url_identity(a) == url_identity(a)


@pytest.mark.parametrize(
    ("url", "target", "basic"),
    [
        ("https://user:p%40ss@host/x", "https://host/x", "user:p@ss"),
        ("https://TOKEN@host/x?a=1", "https://host/x?a=1", "TOKEN:"),
        ("https://host/x?token=T", "https://host/x?token=T", None),
    ],
)
def test_request_parts_turn_userinfo_into_basic_auth(url, target, basic):
    got, headers = request_parts(url)
    assert got == target
    expected = {"Authorization": "Basic " + base64.b64encode(basic.encode()).decode()} if basic else {}
    assert headers == expected


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("GET https://u:pw@h/x.zip failed (timeout)", "GET https://h/x.zip failed (timeout)"),
        ("with url: /x.zip?sig=abc&v=1 (Caused by)", "with url: /x.zip?sig=***&v=1 (Caused by)"),
        ("use -p key=value, e.g. -p epochs=5", "use -p key=value, e.g. -p epochs=5"),
    ],
)  # fmt: skip
def test_redact_urls_in_text(text, redacted):
    assert redact_urls(text) == redacted
