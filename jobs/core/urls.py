"""Credentials in URLs: the public form every stored or printed URL takes, the identity that stands for the full
one, and the request parts a client sends.

A URL may carry secrets in its userinfo (``https://user:PASSWORD@host/x.zip``, ``https://TOKEN@host/``) or in its
query (``?token=…``, a presigned ``X-Amz-Signature``, an Azure ``sig``). Such a URL is used only to make the
request; everything that is kept or shown (manifests, ``_collect/`` records and their names, logs, result files,
summaries, command lines) gets ``public_url(url)``: userinfo removed, secret query values replaced by ``***``.
Where the full URL must still tell two downloads apart (cache keys, unit ids), ``url_identity`` gives a salted,
memory-hard hash (scrypt): a short password stays expensive to guess from a manifest.
The runner hands a URL to a stage in ``URL_ENV`` rather than on its command line, where ``ps`` would show it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

URL_ENV = "IRMSIA_URL"
"""The environment variable a stage reads as the value of ``--url`` when the flag is empty (set by the runner)."""
MASK = "***"

# Query parameters whose value is a credential: exact names, and names containing one of the words.
_SECRET_PARAMS = frozenset({"key", "sig", "auth", "code", "pass", "pw", "jwt", "sas", "otp"})
_SECRET_WORDS = re.compile(r"(?i)token|secret|passw|pwd|signature|credential|api[_-]?key|access[_-]?key|session")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")
_QUERY_IN_TEXT = re.compile(r"([?&])([^=&\s\"'?#]+)=([^&\s\"'#]*)")
_USERINFO = re.compile(r"(//)[^/?#@\s]*@")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter's value is a credential (``token``, ``X-Amz-Signature``, ``api_key``, ``sig``…)."""
    return name.lower() in _SECRET_PARAMS or bool(_SECRET_WORDS.search(name))


def _mask_query(query: str) -> str:
    """``query`` with each secret parameter's value masked, every other byte as given."""
    pieces = query.split("&")
    for i, piece in enumerate(pieces):
        name, eq, _ = piece.partition("=")
        if eq and is_secret_param(unquote_plus(name)):
            pieces[i] = f"{name}={MASK}"
    return "&".join(pieces)


def public_url(url: str) -> str:
    """``url`` without credentials: no userinfo, and every secret query value replaced by ``***``.

    A URL without credentials comes back unchanged, character for character.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL (a bad IPv6 literal): strip what looks like userinfo
        return _USERINFO.sub(r"\1", url)
    netloc = parts.netloc.rpartition("@")[2]
    query = _mask_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries userinfo or a secret query parameter."""
    return public_url(url) != url


@functools.lru_cache(maxsize=32)  # a stage asks for it for its cache key and again for its unit id
def url_identity(url: str) -> str:
    """What identifies ``url`` in cache keys and unit ids without revealing its credentials.

    The URL itself when it has none; otherwise its public form plus a scrypt hash of the full URL, salted with
    the public form (about 50 ms and 16 MiB per guess, so a password cannot be recovered by trying a word list).
    """
    public = public_url(url)
    if public == url:
        return url
    digest = hashlib.scrypt(url.encode(), salt=public.encode(), n=1 << 14, r=8, p=1, dklen=16).hex()
    return f"{public}#credentials-scrypt:{digest}"


def request_parts(url: str) -> tuple[str, dict[str, str]]:
    """The URL to request and the headers its userinfo stands for: ``Authorization: Basic …`` (as curl sends
    it; a lone token is the user name with an empty password). HTTP clients drop userinfo from the request line
    and urllib3 does not turn it into a header itself."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, {}
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, {}
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    plain = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return plain, {"Authorization": f"Basic {token}"}


def redact_urls(text: str) -> str:
    """``text`` with every URL in it made public, and secret ``?name=value`` pairs masked where a message quotes
    only a URL's path and query (urllib3: ``Max retries exceeded with url: /x.zip?token=…``)."""
    text = _URL_IN_TEXT.sub(lambda m: public_url(m.group(0)), text)
    return _QUERY_IN_TEXT.sub(lambda m: f"{m[1]}{m[2]}={MASK}" if is_secret_param(m[2]) else m[0], text)
