"""PKI: the CA, the API server certificate, node client certificates and CSR checks."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nimbus.errors import BadRequest
from nimbus.security import pki

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def ca():
    return pki.create_ca(NOW)


def verify_signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    cert.verify_directly_issued_by(ca_cert)


def test_ca_properties(ca):
    cert_pem, key_pem = ca
    cert = pki.load_cert(cert_pem)
    key = pki.load_key(key_pem)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3652)
    assert cert.issuer == cert.subject
    verify_signed_by(cert, cert)
    assert "BEGIN PRIVATE KEY" in key_pem and "ENCRYPTED" not in key_pem


def test_server_cert_sans_eku_and_chain(ca):
    cert_pem, key_pem = pki.create_server_cert(
        *ca, ["localhost", "127.0.0.1", "::1", "10.106.103.1", "cp.example", "localhost"], NOW)
    cert = pki.load_cert(cert_pem)
    verify_signed_by(cert, pki.load_cert(ca[0]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "cp.example"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.106.103.1")}
    assert pki.server_cert_sans(cert_pem) == {"localhost", "cp.example", "127.0.0.1", "::1",
                                              "10.106.103.1"}
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    pub = pki.load_key(key_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pub == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_client_cert_identity_comes_from_the_server_not_the_csr(ca):
    csr_pem, key_pem = pki.make_csr("node-ffffffffffffffff")  # lies about who it is
    cert_pem, serial, not_after = pki.sign_client_csr(
        *ca, csr_pem, "node-0123456789abcdef", lifetime_sec=30 * 86400, now=NOW)
    cert = pki.load_cert(cert_pem)
    verify_signed_by(cert, pki.load_cert(ca[0]))
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [c.value for c in cns] == ["node-0123456789abcdef"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert not ku.key_cert_sign and not ku.crl_sign
    assert not_after == NOW + 30 * 86400
    assert cert.not_valid_after_utc.timestamp() == NOW + 30 * 86400
    assert cert.not_valid_before_utc.timestamp() <= NOW
    assert serial == format(cert.serial_number, "x")
    # The node's key (never sent) matches the certificate.
    assert pki.load_key(key_pem).public_key().public_numbers() == cert.public_key().public_numbers()
    info = pki.cert_info(cert_pem)
    assert info.common_name == "node-0123456789abcdef" and info.serial == serial


def test_each_certificate_gets_a_new_serial(ca):
    csr_pem, _ = pki.make_csr("x")
    s1 = pki.sign_client_csr(*ca, csr_pem, "node-0123456789abcdef", 86400, NOW)[1]
    s2 = pki.sign_client_csr(*ca, csr_pem, "node-0123456789abcdef", 86400, NOW)[1]
    assert s1 != s2


def _csr(key, cn="n") -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_csr_validation():
    assert pki.check_csr(_csr(ec.generate_private_key(ec.SECP384R1())))
    assert pki.check_csr(_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(BadRequest, match="P-256 or P-384"):
        pki.check_csr(_csr(ec.generate_private_key(ec.SECP521R1())))
    with pytest.raises(BadRequest, match="2048"):
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        pki.check_csr(_csr(weak))
    with pytest.raises(BadRequest, match="not supported"):
        pki.check_csr(_csr(ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(BadRequest, match="not a PEM"):
        pki.check_csr("hello")
    with pytest.raises(BadRequest):
        pki.check_csr(pki.create_ca(NOW)[0])  # a certificate is not a CSR


def test_csr_with_a_bad_signature_is_refused():
    pem = _csr(ec.generate_private_key(ec.SECP256R1()))
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    import base64
    body = base64.encodebytes(bytes(der)).decode()
    bad = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(BadRequest):
        pki.check_csr(bad)


def test_sign_client_csr_validates_the_csr(ca):
    with pytest.raises(BadRequest):
        pki.sign_client_csr(*ca, "garbage", "node-0123456789abcdef", 86400, NOW)
