"""Keyed pseudonyms: the same original value gives the same replacement under the same secret, and nothing else.

Every replacement is an HMAC-SHA256 of the original under the secret (``IRMSIA_DEID_SECRET``, read from the
environment only): UIDs become ``2.25.<decimal>`` (the UUID-derived root PS3.5 B.2 allows), identifiers a 16-letter
code, and each patient gets a date shift of whole days. So a study's files keep one study UID, a patient keeps one
PatientID and the intervals between a patient's dates, and a rerun writes the same bytes; without the secret the
originals cannot be recovered or confirmed by guessing. The manifest records only a scrypt fingerprint of the
secret, so a changed secret changes the cache key without revealing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_ENV = "IRMSIA_DEID_SECRET"
MIN_SECRET_BYTES = 16
"""A shorter secret would make the pseudonyms guessable from a list of likely originals."""
SHIFT_DAYS = (30, 3650)
"""Dates move back by 30 days to 10 years, the same for all of one patient's dates."""


class Pseudonyms:
    """Replacement values derived from one secret."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """A new UID for ``value``: ``2.25.`` and 128 bits as a decimal (at most 44 characters)."""
        return "2.25." + str(int.from_bytes(self._digest("uid", value.strip())[:16], "big"))

    def identifier(self, value: str) -> str:
        """A 16-character code for an identifier (fits SH): letters and digits."""
        return base64.b32encode(self._digest("id", value.strip())[:10]).decode()

    def day_shift(self, patient: str) -> int:
        """How many days back one patient's dates move."""
        low, high = SHIFT_DAYS
        return low + int.from_bytes(self._digest("dates", patient)[:8], "big") % (high - low + 1)

    def fingerprint(self) -> str:
        """What identifies the secret in the cache key and the manifest: a salted scrypt hash, never the secret."""
        return hashlib.scrypt(self._key, salt=b"irmsia-deid-secret", n=1 << 14, r=8, p=1, dklen=12).hex()
