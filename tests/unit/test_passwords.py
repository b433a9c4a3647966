"""scrypt password hashes: per-user salt, verification, and the unknown-user path."""

from __future__ import annotations

import base64

from nimbus.security import passwords


def test_hash_format_and_per_user_salt():
    a = passwords.hash_password("correct horse")
    b = passwords.hash_password("correct horse")
    assert a != b  # fresh salt each time
    scheme, n, r, p, salt, digest = a.split("$")
    assert scheme == "scrypt" and int(n) >= 2**14 and int(r) == 8 and int(p) == 1
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert "correct horse" not in a


def test_verify_right_and_wrong_password():
    encoded = passwords.hash_password("correct horse")
    assert passwords.verify_password("correct horse", encoded)
    assert not passwords.verify_password("correct horsE", encoded)
    assert not passwords.verify_password("", encoded)
    assert not passwords.verify_password("correct horse ", encoded)


def test_unknown_user_path_spends_a_hash_and_returns_false(monkeypatch):
    calls = []
    real = passwords._scrypt
    monkeypatch.setattr(passwords, "_scrypt", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert passwords.verify_password("anything", None) is False
    assert calls == [1]  # as expensive as a known user
    # Even the dummy's own password does not log in a user who does not exist.
    assert passwords.verify_password("", None) is False


def test_corrupt_hashes_are_false_not_errors():
    for bad in ("", "scrypt$1$2", "scrypt$x$8$1$AAAA$AAAA", "md5$abc", "scrypt$16384$8$1$!!$!!"):
        assert passwords.verify_password("pw", bad) is False
