"""AES-GCM encryption at rest for keys in the data directory."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from certloop.errors import ConfigError
from certloop.renewer.errors import KeystoreError
from certloop.renewer.keystore import Keystore

KEY = bytes(range(32))


def test_round_trip_file_is_0600_and_holds_no_plaintext(tmp_path: Path) -> None:
    """A sealed file opens with the same key, id and purpose; it is 0600 and not plaintext."""
    ks = Keystore(KEY)
    path = tmp_path / "k" / "shop.sealed"
    ks.write(path, b"-----BEGIN PRIVATE KEY-----secret", certificate_id="shop", purpose="key")
    assert b"secret" not in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    assert ks.read(path, certificate_id="shop", purpose="key") == b"-----BEGIN PRIVATE KEY-----secret"


@pytest.mark.parametrize(
    ("certificate_id", "purpose", "key"),
    [("other", "key", KEY), ("shop", "account", KEY), ("shop", "key", bytes(32))],
)
def test_wrong_binding_or_key_does_not_open(tmp_path: Path, certificate_id: str, purpose: str, key: bytes) -> None:
    """A blob copied onto another certificate, used for another purpose, or read with another key fails."""
    path = tmp_path / "shop.sealed"
    Keystore(KEY).write(path, b"data", certificate_id="shop", purpose="key")
    with pytest.raises(KeystoreError, match="cannot decrypt"):
        Keystore(key).read(path, certificate_id=certificate_id, purpose=purpose)


def test_tampering_is_detected(tmp_path: Path) -> None:
    """Flipping one ciphertext bit makes the blob unreadable (GCM tag)."""
    ks = Keystore(KEY)
    blob = bytearray(ks.seal(b"data", certificate_id="shop", purpose="key"))
    blob[-1] ^= 1
    with pytest.raises(KeystoreError):
        ks.unseal(bytes(blob), certificate_id="shop", purpose="key")
    with pytest.raises(KeystoreError, match="not a certloop sealed blob"):
        ks.unseal(b"plaintext", certificate_id="shop", purpose="key")


def test_key_from_file_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key comes from a generated 0600 file (hex) or ${ENV} (hex or base64); both work the same."""
    path = Keystore.generate_key_file(tmp_path / "keystore.key")
    assert path.stat().st_mode & 0o777 == 0o600
    from_file = Keystore.from_secret(None, path)
    monkeypatch.setenv("KS", path.read_text().strip())
    from_env = Keystore.from_secret("${KS}")
    assert from_file.key == from_env.key
    monkeypatch.setenv("KS64", base64.b64encode(from_file.key).decode())
    assert Keystore.from_secret("${KS64}").key == from_file.key
    with pytest.raises(KeystoreError):
        Keystore.generate_key_file(path)  # never overwritten


def test_bad_key_material_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short key or an unset variable is a clear error, and the key never appears in it."""
    monkeypatch.setenv("KS", "abcd")
    with pytest.raises(KeystoreError, match="32 bytes") as info:
        Keystore.from_secret("${KS}")
    assert "abcd" not in str(info.value)
    monkeypatch.delenv("KS")
    with pytest.raises(ConfigError, match="KS is not set"):
        Keystore.from_secret("${KS}")
    assert repr(Keystore(KEY)) == "Keystore()"  # the key never reaches a log line
