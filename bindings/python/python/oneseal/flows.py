"""WhatsApp Flows endpoint crypto: decrypt a data-exchange request, seal its answer once,
verify ``X-Hub-Signature-256``. The same code as the gateway's Flows endpoint."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple, Union

from ._oneseal import Sealer as _NativeSealer
from ._oneseal import flows_decrypt_request as _decrypt
from ._oneseal import flows_verify_signature as _verify

__all__ = ["decrypt_request", "verify_signature", "Sealer"]


class Sealer:
    """Encrypts the answer to one request, under that request's key; usable once."""

    def __init__(self, native: _NativeSealer) -> None:
        self._native = native

    def seal(self, response: Union[Dict[str, Any], bytes, str]) -> str:
        """The base64 body to answer the request with (``text/plain``)."""
        if isinstance(response, dict):
            response = json.dumps(response, separators=(",", ":"))
        if isinstance(response, str):
            response = response.encode("utf-8")
        return self._native.seal(response)


def decrypt_request(
    body: Union[bytes, str],
    private_key_pem: Union[bytes, str],
    passphrase: Optional[Union[bytes, str]] = None,
) -> Tuple[Dict[str, Any], Sealer]:
    """Decrypts a Flows request body (the JSON Meta posts) with the business private key.

    Returns the request as a dict and the :class:`Sealer` of its answer. An undecryptable
    request raises ``CryptoError`` (answer HTTP 421: the client fetches the public key again).
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(private_key_pem, bytes):
        private_key_pem = private_key_pem.decode("ascii")
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    plain, sealer = _decrypt(body, private_key_pem, passphrase)
    return json.loads(plain), Sealer(sealer)


def verify_signature(body: bytes, header: str, app_secret: Union[bytes, str]) -> None:
    """Checks ``X-Hub-Signature-256`` (``sha256=<hex>``) against the raw body; raises
    ``CryptoError`` on a mismatch (answer HTTP 432), ``BadInputError`` on a malformed header."""
    if isinstance(app_secret, str):
        app_secret = app_secret.encode("utf-8")
    _verify(body, header, app_secret)
