"""Deciding to trust a control plane: its URL, its CA and the CA's fingerprint.

The CLI verifies the API only against the control plane's own CA. Fetching that CA from
`GET /v1/ca` is trust on first use, so the CA's SHA-256 fingerprint is shown (as `ssh`
shows a host key's) and must be confirmed, or given beforehand with `--ca-fingerprint`.
"""

from __future__ import annotations

from nimbus.errors import BadRequest, NimbusError

# Every command checks its saved URL with check_api_url: the rest of this module's imports
# (ssl, base64) are made where they are used, off that path.


def check_api_url(url: str) -> str:
    """`https://HOST[:PORT][/PREFIX]` with a valid port, without its trailing slash."""
    from nimbus.client import split_url

    try:
        split_url(url.strip())
    except NimbusError:
        raise BadRequest(f"API URL must look like https://HOST[:PORT] with a port from 1 to "
                         f"65535, got {url!r}") from None
    return url.strip().rstrip("/")


def fetch_ca(api_url: str) -> str:
    """The CA certificate the server at api_url presents at GET /v1/ca — NOT yet trusted."""
    import ssl

    from nimbus.client import ApiClient

    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    client = ApiClient(api_url, None, context=insecure, timeout=15)
    try:
        pem = client.text("/v1/ca")
    finally:
        client.close()
    try:
        fingerprint(pem)
    except ValueError:
        raise NimbusError(f"{api_url} did not return a CA certificate at /v1/ca") from None
    return pem


def fingerprint(pem: str) -> str:
    """`SHA256:<base64>` of the certificate (DER), the form `ssh` uses for host keys."""
    import base64

    from nimbus.security.pki import ca_fingerprint

    raw = bytes.fromhex(ca_fingerprint(pem))
    return "SHA256:" + base64.b64encode(raw).decode().rstrip("=")


def hex_fingerprint(pem: str) -> str:
    """The same digest as `openssl x509 -noout -fingerprint -sha256` prints it."""
    from nimbus.security.pki import ca_fingerprint

    digest = ca_fingerprint(pem).upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def matches(given: str, pem: str) -> bool:
    """True when `given` (SHA256:base64, or hex with or without colons) is the CA's digest."""
    import base64
    import hmac

    from nimbus.security.pki import ca_fingerprint

    text = given.strip()
    if text.upper().startswith("SHA256:"):
        body = text[7:]
        try:
            if ":" not in body or len(body) < 64:
                digest = base64.b64decode(body + "=" * (-len(body) % 4), validate=True).hex()
            else:
                digest = body.replace(":", "").lower()
        except ValueError:
            return False
    else:
        digest = text.replace(":", "").lower()
    return hmac.compare_digest(digest, ca_fingerprint(pem))
