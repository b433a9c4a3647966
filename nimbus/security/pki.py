"""X.509: our CA, server certificates, node CSRs and client certificates (pure crypto)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nimbus.errors import BadRequest

CA_LIFETIME_DAYS = 3650
SERVER_LIFETIME_DAYS = 825


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_cert(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def load_key(pem: str | bytes) -> Any:
    return serialization.load_pem_private_key(
        pem.encode() if isinstance(pem, str) else pem, password=None)


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Nimbus"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def create_ca(now: float, name: str = "Nimbus CA") -> tuple[str, str]:
    """A self-signed ECDSA P-256 CA valid 10 years: (cert_pem, key_pem)."""
    key = _new_key()
    subject = _name(name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - 300))
        .not_valid_after(_utc(now + CA_LIFETIME_DAYS * 86400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert_pem(cert), key_pem(key)


def _leaf(ca_cert: x509.Certificate, ca_key: Any, subject: x509.Name, public_key: Any,
          now: float, lifetime_sec: float, *ekus: x509.ObjectIdentifier) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - 300))
        .not_valid_after(_utc(now + lifetime_sec))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )


def _sans(sans: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for san in dict.fromkeys(sans):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    return x509.SubjectAlternativeName(names)


def create_server_cert(ca_cert_pem: str, ca_key_pem: str, sans: list[str],
                       now: float) -> tuple[str, str]:
    """A serverAuth-only certificate for the API covering the given DNS names and IPs."""
    ca_cert, ca_key = load_cert(ca_cert_pem), load_key(ca_key_pem)
    key = _new_key()
    builder = _leaf(ca_cert, ca_key, _name("nimbus-api"), key.public_key(), now,
                    SERVER_LIFETIME_DAYS * 86400, ExtendedKeyUsageOID.SERVER_AUTH)
    cert = builder.add_extension(_sans(sans), critical=False).sign(ca_key, hashes.SHA256())
    return cert_pem(cert), key_pem(key)


def create_peer_cert(ca_cert_pem: str, ca_key_pem: str, common_name: str, sans: list[str],
                     lifetime_sec: float, now: float) -> tuple[str, str]:
    """A certificate for a process that is both server and client of its peers (SeaweedFS
    gRPC mutual TLS): serverAuth + clientAuth, its CN and the given IPs. Its CN is never a
    node id and its serial is in no node's list, so the API refuses it as a node identity."""
    ca_cert, ca_key = load_cert(ca_cert_pem), load_key(ca_key_pem)
    key = _new_key()
    builder = _leaf(ca_cert, ca_key, _name(common_name), key.public_key(), now, lifetime_sec,
                    ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = builder.add_extension(_sans(sans), critical=False).sign(ca_key, hashes.SHA256())
    return cert_pem(cert), key_pem(key)


def server_cert_sans(pem: str) -> set[str]:
    cert = load_cert(pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.IPAddress)} | set(
        ext.get_values_for_type(x509.DNSName))


def make_csr(common_name: str) -> tuple[str, str]:
    """Node side: a fresh P-256 key that never leaves the node, and a CSR for it."""
    key = _new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(_name(common_name))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem(key)


def check_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise BadRequest("csr is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise BadRequest("csr signature is invalid")
    pub = csr.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in ("secp256r1", "secp384r1"):
            raise BadRequest("csr key must be P-256 or P-384")
    elif isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < 2048:
            raise BadRequest("csr RSA key must be at least 2048 bits")
    else:
        raise BadRequest("csr key type is not supported")
    return csr


def sign_client_csr(ca_cert_pem: str, ca_key_pem: str, csr_pem: str, common_name: str,
                    lifetime_sec: float, now: float) -> tuple[str, str, float]:
    """Sign a node CSR into a clientAuth-only certificate whose CN is the node ID.

    The CSR's own subject is ignored: the identity comes from the server, not the node.
    Returns (cert_pem, serial as hex, not_after as epoch seconds).
    """
    csr = check_csr(csr_pem)
    ca_cert, ca_key = load_cert(ca_cert_pem), load_key(ca_key_pem)
    builder = _leaf(ca_cert, ca_key, _name(common_name), csr.public_key(), now, lifetime_sec,
                    ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert_pem(cert), format(cert.serial_number, "x"), cert.not_valid_after_utc.timestamp()


@dataclass(frozen=True)
class CertInfo:
    serial: str
    common_name: str
    not_before: float
    not_after: float
    fingerprint: str


def cert_info(pem: str) -> CertInfo:
    cert = load_cert(pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertInfo(
        serial=format(cert.serial_number, "x"),
        common_name=str(cns[0].value) if cns else "",
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )


def ca_fingerprint(pem: str) -> str:
    return load_cert(pem).fingerprint(hashes.SHA256()).hex()
