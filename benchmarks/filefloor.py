"""A lower bound for the files scenario: the least any Python exporter does per file, end to end.

    python -m benchmarks.filefloor DIR       # prints one JSON line: seconds, files, workers

Not a peer and not certloop: a reference point, measured on the same files in the same run, like the
"raw handshake" figures the issue quotes for ``/probe``. It starts a fresh interpreter that imports
only ``cryptography``, ``yaml`` and ``pydantic``, reads a one-line YAML config naming ``DIR`` into a
pydantic model (an exporter learns which files to read from its validated config: the issue asks for
YAML into typed models, and pydantic is the chosen library), lists ``DIR`` recursively, forks one
worker per core and, per file, in chunks:

- reads it and decodes each ``CERTIFICATE`` block of its PEM (base64, then DER), the leaf first; the
  block after it, the issuer, is the same in every file and parsed once per worker;
- checks the leaf's signature with the issuer's public key (one ECDSA or RSA verification);
- takes the dates, serial, DNS names and SHA-256 fingerprint, and writes ten sample lines like
  certloop's per file;
- hands the text back to the parent.

It skips what certloop must also do, so its time is a lower bound for it: no subject text, no key
type or size, no chain roles or verdict (a signature check is all it verifies), no path building for
a first leaf, no labels, no per-file state for later sweeps, no HTTP server, no event loop, a
one-field config. The harness times it from process start to exit (:func:`benchmarks.files.run`), as
it times certloop's first start; if this floor is over a target on some machine, no Python exporter
meets that target there.

Imports nothing from certloop, on purpose: the bound must not move when certloop's code does.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pydantic
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

_CHUNK = 128
_END = b"-----END CERTIFICATE-----"
_ISSUERS: dict[bytes, tuple[str, Any]] = {}  # a PEM block -> (subject text, public key), per worker


class _Config(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    directory: str


def _files(root: str) -> Iterator[str]:
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.endswith(".pem"):
                    yield entry.path


def _der(block: bytes) -> bytes:
    return binascii.a2b_base64(block[block.index(b"-----\n", block.index(b"-----BEGIN")) + 6 :])


def _issuer(block: bytes) -> tuple[str, Any]:
    found = _ISSUERS.get(block)
    if found is None:
        cert = x509.load_der_x509_certificate(_der(block))
        found = _ISSUERS[block] = (cert.subject.rfc4514_string(), cert.public_key())
    return found


def _check(leaf: x509.Certificate, key: Any) -> bool:
    tbs, signature, digest = leaf.tbs_certificate_bytes, leaf.signature, leaf.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and digest is not None:
            key.verify(signature, tbs, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey) and digest is not None:
            key.verify(signature, tbs, padding.PKCS1v15(), digest)
        else:
            return False
    # A bad signature, or parameters the key refuses (the errors certloop.verify expects of `verify` too):
    # the file's verdict, not the floor's business. Anything else is a bug in the floor and stops the run.
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    blocks = data.split(_END)[:-1]
    der = _der(blocks[0])
    leaf = x509.load_der_x509_certificate(der)
    issuer, key = _issuer(blocks[1]) if len(blocks) > 1 else ("", None)
    ok = _check(leaf, key)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = ",".join(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ""
    before, after = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
    t = f'target="{path}"'
    leaf_t, root_t = f'{t},position="0",role="leaf"', f'{t},position="1",role="root"'
    return (
        f"certloop_probe_success{{{t}}} 1\ncertloop_probe_duration_seconds{{{t}}} 0.0001\n"
        f"certloop_verify_ok{{{t}}} {int(ok)}\ncertloop_verify_verdict{{{t},verdict=\"ok\"}} 1\n"
        f"certloop_chain_expiry_timestamp_seconds{{{t}}} {after:.10g}\n"
        f"certloop_cert_not_before_timestamp_seconds{{{leaf_t}}} {before:.10g}\n"
        f"certloop_cert_not_after_timestamp_seconds{{{leaf_t}}} {after:.10g}\n"
        f"certloop_cert_weak_crypto{{{leaf_t}}} 0\ncertloop_cert_weak_crypto{{{root_t}}} 0\n"
        f'certloop_cert_info{{{leaf_t},issuer="{issuer}",'
        f'serial="{leaf.serial_number:x}",dns_names="{names}",'
        f'fingerprint_sha256="{hashlib.sha256(der).hexdigest()}"}} 1\n'
    ).encode()


def _chunk(paths: list[str]) -> list[bytes]:
    return [_file(p) for p in paths]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.filefloor DIR", file=sys.stderr)
        return 2
    started = time.monotonic()
    config = _Config.model_validate(yaml.safe_load(json.dumps({"directory": argv[0]})))
    paths = sorted(_files(config.directory))
    workers = len(os.sched_getaffinity(0))
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        texts = [t for part in pool.imap_unordered(_chunk, chunks) for t in part]
    body = sum(len(t) for t in texts)
    print(json.dumps({"seconds": time.monotonic() - started, "files": len(texts), "workers": workers,
                      "bytes": body}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
