"""Tests for nimbus.security.wgkeys: generation, derivation, validation, interop with `wg`."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from nimbus.security.wgkeys import generate_keypair, is_valid_key, public_key

# RFC 7748 section 6.1 test vector (Alice).
ALICE_PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_generate_keypair_gives_valid_matching_keys():
    priv, pub = generate_keypair()
    assert is_valid_key(priv) and is_valid_key(pub)
    assert public_key(priv) == pub
    assert generate_keypair()[0] != priv


def test_generated_private_key_is_clamped_like_wg_genkey():
    raw = base64.b64decode(generate_keypair()[0])
    assert raw[0] & 7 == 0
    assert raw[31] & 128 == 0 and raw[31] & 64 == 64


def test_public_key_matches_rfc7748_vector():
    assert public_key(b64(ALICE_PRIV)) == b64(ALICE_PUB)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        b64(bytes(31)),
        b64(bytes(33)),
        b64(bytes(32))[:-1] + "!",
        None,
        42,
        " " + b64(bytes(32))[1:],
    ],
)
def test_is_valid_key_rejects_garbage(value):
    assert not is_valid_key(value)


def test_public_key_rejects_invalid_without_echoing_it():
    with pytest.raises(ValueError) as exc:
        public_key("not-a-secret-key")
    assert "not-a-secret-key" not in str(exc.value)


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools (wg) not installed")
def test_keys_interoperate_with_wg_pubkey():
    priv, pub = generate_keypair()
    out = subprocess.run(["wg", "pubkey"], input=priv, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == pub
    wg_priv = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True)
    wg_priv_s = wg_priv.stdout.strip()
    wg_pub = subprocess.run(
        ["wg", "pubkey"], input=wg_priv_s, capture_output=True, text=True, check=True
    )
    assert is_valid_key(wg_priv_s)
    assert public_key(wg_priv_s) == wg_pub.stdout.strip()
