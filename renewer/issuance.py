"""What an issuer is asked for: one frozen value, built from a certificate's spec by the spec itself.

Issuers see this request, never ``CertificateSpec``: they sit below the spec (the spec's ``issuer:``
union is made of their settings models), so naming the spec from an issuer would tie the two layers
into one. What must stay true: this module imports nothing from the renewer, so both the spec and
every issuer can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

__all__ = ["KEY_TYPES", "IssueRequest", "KeyType"]

KeyType = Literal["ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"]
KEY_TYPES: frozenset[str] = frozenset(get_args(KeyType))


@dataclass(frozen=True)
class IssueRequest:
    """One certificate to issue.

    ``certificate_id``: the configured id (the ``certificate`` label value; certbot names its lineage
    after it). ``domains``: the names to request, validated and lower-cased, the first one first.
    ``key_type``: the certificate key to generate. ``outputs``: the live paths certloop installs to; an
    issuer never writes them (installing is the pipeline's job), and one whose own files must differ
    from them checks that when the config loads.
    """

    certificate_id: str
    domains: tuple[str, ...]
    key_type: KeyType
    outputs: tuple[Path, ...]
