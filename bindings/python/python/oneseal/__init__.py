"""oneseal: client-side encryption of WhatsApp message content for Clickatell's One API.

The same engine as the ``oneseal`` CLI and gateway (a binding, not a reimplementation): the
same field policy, wire formats, key cache and errors. Five lines::

    import oneseal
    engine = oneseal.Engine(kms_key_id="alias/whatsapp")     # or no key id: the local key
    sealed = engine.encrypt({"messages": [{"channel": "whatsapp", "to": "2799900001",
                                           "content": "Your code is 123456"}]})
    plain = engine.decrypt(callback_body)                     # bytes, str or dict

An engine keeps one warm key cache (one ``GenerateDataKey`` per 1000 messages or 300 s) and is
safe to share between threads; the GIL is released while it works. The ``*_async`` methods
run on a worker thread and never block the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, BinaryIO, Dict, Iterable, List, Optional, Tuple, Union

from . import flows
from ._oneseal import (
    BadInputError,
    CryptoError,
    Error,
    KeyServiceError,
    NativeEngine as _Native,
    UsageError,
    upload_query as _upload_query,
)

__all__ = [
    "Engine",
    "MediaFile",
    "Error",
    "UsageError",
    "BadInputError",
    "CryptoError",
    "KeyServiceError",
    "flows",
]

Document = Union[bytes, bytearray, memoryview, str, Dict[str, Any]]
PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]

# Copying file objects to and from the engine's files, this much at a time.
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class MediaFile:
    """An encrypted media file and what its upload needs."""

    sha256_file_hash: str
    """SHA-256 of the plaintext, lowercase hex (the upload's ``sha256FileHash``)."""
    encryption_key: str
    """The wrapped data key, base64 (the upload's ``encryptionKey``)."""
    kms_arn: str
    """The wrapping key (the upload's ``kmsArn``)."""
    upload_query: str
    """The upload's query string: ``fileName``, ``to`` or ``broadcastAllowed``, the three above."""
    byte_size: int
    """Plaintext size in bytes."""
    encrypted_byte_size: int
    """Encrypted file size in bytes."""


def _to_bytes(doc: Document) -> Tuple[bytes, str]:
    if isinstance(doc, bytes):
        return doc, "bytes"
    if isinstance(doc, (bytearray, memoryview)):
        return bytes(doc), "bytes"
    if isinstance(doc, str):
        return doc.encode("utf-8"), "str"
    if isinstance(doc, dict):
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), "dict"
    raise UsageError(f"a document is bytes, str or dict, not {type(doc).__name__}")


def _from_bytes(out: bytes, kind: str) -> Any:
    if kind == "bytes":
        return out
    if kind == "str":
        return out.decode("utf-8")
    return json.loads(out)


class Engine:
    """Encrypts requests and decrypts callbacks and media; one per process, shared by threads.

    ``kms_key_id`` selects AWS KMS for new data keys (region, endpoint, profile and
    credentials from the arguments or AWS's own settings); without it the local key at
    ``local_key`` (default: the CLI's, ``<data dir>/oneseal/local.key``) is used and created
    if missing — for development: the platform cannot decrypt it. Decryption opens local
    blobs with the local key and every other blob with KMS. ``suite`` is ``"gcm"`` (default)
    or ``"cbc"``; ``fields`` adds policy leaves (``"customData.note"``); ``strict`` refuses
    members the policy does not know (``passthrough`` lists those to send as they are);
    ``api`` forces ``"one"`` or ``"legacy"``.
    """

    def __init__(
        self,
        kms_key_id: Optional[str] = None,
        region: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        profile: Optional[str] = None,
        suite: str = "gcm",
        encryption_context: Optional[Dict[str, str]] = None,
        local_key: Optional[Union[str, "os.PathLike[str]"]] = None,
        fields: Iterable[str] = (),
        strict: bool = False,
        api: Optional[str] = None,
        max_messages_per_key: int = 1000,
        key_max_age_seconds: int = 300,
        fresh_key_per_message: bool = False,
        passthrough: Iterable[str] = (),
    ) -> None:
        kw = dict(
            kms_key_id=kms_key_id,
            region=region,
            endpoint_url=endpoint_url,
            profile=profile,
            suite=suite,
            encryption_context=dict(encryption_context) if encryption_context else None,
            local_key=os.fspath(local_key) if local_key is not None else None,
            fields=list(fields),
            strict=strict,
            api=api,
            max_messages_per_key=max_messages_per_key,
            key_max_age_seconds=key_max_age_seconds,
            fresh_key_per_message=fresh_key_per_message,
            passthrough=list(passthrough),
        )
        self._native = _Native(**kw)
        # keep_going decrypts: the same keys and cache, failures left in place.
        self._lenient = None
        self._kw = kw

    @property
    def uses_local_key(self) -> bool:
        """Whether new data keys come from the local key (the platform cannot read them)."""
        return self._native.uses_local_key

    def encrypt(self, doc: Document) -> Any:
        """Encrypts every policy leaf of a One API or legacy request and sets ``encryptionKey``.

        ``doc`` is bytes, str or dict; the result is the same type (bytes and str are the
        CLI's compact output, key order kept). A bad document raises ``BadInputError`` with
        ``.path`` and costs no key-service call.
        """
        data, kind = _to_bytes(doc)
        return _from_bytes(self._native.encrypt(data), kind)

    def decrypt(self, doc: Document, keep_going: bool = False) -> Any:
        """Decrypts a callback (or an encrypted request); the result is the same type as ``doc``.

        With ``keep_going``, items that cannot be decrypted are left as they are instead of
        raising; :meth:`decrypt_report` also says which and why.
        """
        return self.decrypt_report(doc, keep_going)[0]

    def decrypt_report(
        self, doc: Document, keep_going: bool = False
    ) -> Tuple[Any, List[Tuple[Optional[str], str]]]:
        """:meth:`decrypt`, and the ``(path, message)`` of each item left as it was."""
        data, kind = _to_bytes(doc)
        native = self._native
        if keep_going:
            if self._lenient is None:
                self._lenient = _Native(**self._kw, keep_going=True)
            native = self._lenient
        out, failures = native.decrypt(data)
        return _from_bytes(out, kind), list(failures)

    async def encrypt_async(self, doc: Document) -> Any:
        """:meth:`encrypt` on a worker thread: the event loop keeps running."""
        return await asyncio.get_running_loop().run_in_executor(None, self.encrypt, doc)

    async def decrypt_async(self, doc: Document, keep_going: bool = False) -> Any:
        """:meth:`decrypt` on a worker thread: the event loop keeps running."""
        return await asyncio.get_running_loop().run_in_executor(
            None, self.decrypt, doc, keep_going
        )

    def encrypt_ndjson(self, src: PathOrFile, dst: PathOrFile) -> int:
        """Encrypts one request per line from ``src`` into ``dst`` (paths or binary file
        objects); memory is bounded by the longest line. Returns the number of lines."""
        return self._ndjson(src, dst, decrypt=False)

    def decrypt_ndjson(self, src: PathOrFile, dst: PathOrFile) -> int:
        """Decrypts one callback per line (a callback archive); see :meth:`encrypt_ndjson`."""
        return self._ndjson(src, dst, decrypt=True)

    def _ndjson(self, src: PathOrFile, dst: PathOrFile, decrypt: bool) -> int:
        with tempfile.TemporaryDirectory(prefix="oneseal-") as tmp:
            if hasattr(src, "read"):
                path = os.path.join(tmp, "in.ndjson")
                with open(path, "wb") as f:
                    shutil.copyfileobj(src, f, _CHUNK)  # type: ignore[arg-type]
                src = path
            if hasattr(dst, "write"):
                out = os.path.join(tmp, "out.ndjson")
                n = self._native.ndjson(os.fspath(src), out, decrypt)
                with open(out, "rb") as f:
                    shutil.copyfileobj(f, dst, _CHUNK)  # type: ignore[arg-type]
                return n
            return self._native.ndjson(os.fspath(src), os.fspath(dst), decrypt)  # type: ignore[arg-type]

    def encrypt_file(
        self,
        path: Union[str, "os.PathLike[str]"],
        out: Union[str, "os.PathLike[str]"],
        to: Optional[str] = None,
        broadcast: bool = False,
        file_name: Optional[str] = None,
    ) -> MediaFile:
        """Encrypts a media file for upload under a new data key, into ``out`` (atomically).

        The platform requires a recipient (``to="2799900001"``) unless the file may be sent to
        anyone (``broadcast=True``); give exactly one. ``file_name`` is the name the
        recipient sees (default: ``path``'s).
        """
        if (to is None) == (not broadcast):
            raise UsageError(
                "give a recipient (to=\"2799900001\") or broadcast=True, exactly one: the platform needs to know who may fetch the file"
            )
        sha, key, arn, size, enc_size = self._native.encrypt_file(os.fspath(path), os.fspath(out))
        name = file_name or os.path.basename(os.fspath(path))
        return MediaFile(
            sha256_file_hash=sha,
            encryption_key=key,
            kms_arn=arn,
            upload_query=_upload_query(name, key, arn, sha, to),
            byte_size=size,
            encrypted_byte_size=enc_size,
        )

    def decrypt_file(
        self,
        path: Union[str, "os.PathLike[str]"],
        out: Union[str, "os.PathLike[str]"],
        encryption_key: str,
        sha256: Optional[str] = None,
    ) -> int:
        """Decrypts a downloaded media file into ``out``; the tag and, when given, the SHA-256
        verify before anything appears at ``out`` (on a mismatch ``CryptoError`` and nothing
        is written). Returns the plaintext size."""
        return self._native.decrypt_file(os.fspath(path), os.fspath(out), encryption_key, sha256)
