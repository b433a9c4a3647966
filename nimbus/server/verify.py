"""Start-up verification of a control plane's data dir: every file that holds or protects data.

`nimbus serve` runs these checks before it listens and refuses to start on the first problem;
`nimbus doctor` runs the same checks and reports every problem. The checks only read: they
never create, repair or re-create anything (a new CA or store key would silently orphan every
node certificate and API key that exists).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from nimbus.errors import ConfigError, DiskFull, NimbusError
from nimbus.store.files import unsafe_permissions

STORE_DIR = "store"
KEY_FILES = ("ca.key", "ca.crt", "jwt.key", "store.key")
RESTORE = "restore the data dir from a backup (nimbus restore)"
# Below this much free space `serve` refuses to start: every write would fail with 507.
MIN_FREE_BYTES = 1 << 20


def initialized(data_dir: Path) -> bool:
    """True once a store was created here: from then on no key may be created anew."""
    return (data_dir / STORE_DIR / "meta.json").exists()


def findings(data_dir: Path) -> list[str]:
    """Every problem found in data_dir, one self-contained line each (empty: all is well)."""
    data_dir = Path(data_dir)
    store_dir = data_dir / STORE_DIR
    if not data_dir.exists():
        return []
    if not initialized(data_dir):
        collections = sorted(store_dir.glob("*.json")) if store_dir.is_dir() else []
        if collections:
            return [f"{store_dir / 'meta.json'} is missing but the store holds "
                    f"{len(collections)} collection file(s); {RESTORE}"]
        return []  # a new control plane: `serve` creates what is missing
    problems = _permissions(data_dir)
    problems += _key_files(data_dir)
    problems += _store(store_dir)
    if not problems:
        problems += _sealed_secrets(data_dir)
    return problems


def _permissions(data_dir: Path) -> list[str]:
    from nimbus.server.ca import SECRET_FILES

    # The directories themselves are tightened at start; readable files are refused.
    store_dir = data_dir / STORE_DIR
    paths = [data_dir / n for n in SECRET_FILES]
    paths += sorted(p for p in store_dir.glob("[!.]*") if p.is_file()) if store_dir.is_dir() else []
    return unsafe_permissions(paths)


def _read(path: Path, what: str, problems: list[str]) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"{path} ({what}) is missing; {RESTORE}")
        return None
    except OSError as exc:
        problems.append(f"{path} ({what}) cannot be read: {exc.strerror}")
        return None
    if not data.strip():
        problems.append(f"{path} ({what}) is empty; {RESTORE}")
        return None
    return data


def _key_files(data_dir: Path) -> list[str]:
    from nimbus.security import pki

    problems: list[str] = []
    ca_key = _read(data_dir / "ca.key", "the CA private key", problems)
    ca_crt = _read(data_dir / "ca.crt", "the CA certificate", problems)
    key = cert = None
    if ca_key is not None:
        try:
            key = pki.load_key(ca_key)
        except (ValueError, TypeError):
            problems.append(f"{data_dir / 'ca.key'} (the CA private key) is damaged; {RESTORE}")
    if ca_crt is not None:
        try:
            cert = pki.load_cert(ca_crt)
        except ValueError:
            problems.append(f"{data_dir / 'ca.crt'} (the CA certificate) is damaged; {RESTORE}")
    if key is not None and cert is not None and not _same_public_key(key, cert):
        problems.append(f"{data_dir / 'ca.crt'} and {data_dir / 'ca.key'} are not a pair; "
                        f"{RESTORE}")
    jwt = _read(data_dir / "jwt.key", "the token signing key", problems)
    if jwt is not None and len(jwt.strip()) < 32:
        problems.append(f"{data_dir / 'jwt.key'} (the token signing key) is damaged; {RESTORE}")
    box = _read(data_dir / "store.key", "the key that seals API secrets", problems)
    if box is not None and _store_key(box) is None:
        problems.append(f"{data_dir / 'store.key'} (the key that seals API secrets) is "
                        f"damaged; {RESTORE}")
    problems += _derived_files(data_dir)
    return problems


def _same_public_key(key: Any, cert: Any) -> bool:
    from cryptography.hazmat.primitives import serialization

    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt))


def _store_key(raw: bytes) -> bytes | None:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        return None
    return key if len(key) == 32 else None


def _derived_files(data_dir: Path) -> list[str]:
    """server.crt/key and wg.key are optional, but a damaged one must be named, not crash."""
    from nimbus.security import pki, wgkeys

    problems = []
    for name, load in (("server.crt", pki.load_cert), ("server.key", pki.load_key)):
        path = data_dir / name
        try:
            load(path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, ValueError, TypeError):
            problems.append(f"{path} is damaged; delete server.crt and server.key and "
                            "`nimbus serve` issues new ones from the CA")
    wg = data_dir / "wg.key"
    try:
        wgkeys.public_key(wg.read_text().strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError):
        problems.append(f"{wg} (the server's WireGuard key) is damaged; {RESTORE}")
    return problems


def _store(store_dir: Path) -> list[str]:
    from nimbus.store.jsonstore import JOURNAL, SCHEMA_VERSION, load_document

    problems: list[str] = []
    raw = _read(store_dir / "meta.json", "the store's schema record", problems)
    if raw is None:
        return problems
    try:
        meta = json.loads(raw)
        schema = int(meta["schema"])
        listed = set(meta.get("collections", []))
    except (ValueError, KeyError, TypeError):
        return [f"{store_dir / 'meta.json'} is damaged; {RESTORE}"]
    if schema > SCHEMA_VERSION:
        return [f"the store at {store_dir} has schema {schema}, newer than this Nimbus "
                f"understands ({SCHEMA_VERSION}); upgrade Nimbus"]
    staged = _staged(store_dir / JOURNAL)
    present = {p.stem for p in store_dir.glob("*.json")} - {"meta", JOURNAL[:-5]}
    for name in sorted(listed | present):
        path = store_dir / f"{name}.json"
        source = store_dir / staged[name] if name in staged else path
        if not source.exists():
            problems.append(f"{path} is missing although the store wrote it before; {RESTORE}")
            continue
        try:
            load_document(source, schema)
        except NimbusError as exc:
            problems.append(exc.message)
    return problems


def _staged(journal: Path) -> dict[str, str]:
    """Files an interrupted commit will rename into place when the store opens."""
    try:
        doc = json.loads(journal.read_bytes())
    except (OSError, ValueError):
        return {}
    staged = doc.get("staged") if isinstance(doc, dict) else None
    if not isinstance(staged, dict):
        return {}
    return {n: t for n, t in staged.items()
            if isinstance(t, str) and "/" not in t and (journal.parent / t).exists()}


def _sealed_secrets(data_dir: Path) -> list[str]:
    """store.key must be the key the API secrets were sealed with (else every request fails)."""
    from nimbus.security.secretbox import SecretBox
    from nimbus.store.jsonstore import load_document

    path = data_dir / STORE_DIR / "keys.json"
    if not path.exists():
        return []
    meta = json.loads((data_dir / STORE_DIR / "meta.json").read_bytes())
    box = SecretBox(_store_key((data_dir / "store.key").read_bytes()) or b"")
    for access_key, record in load_document(path, int(meta["schema"])).items():
        try:
            box.open(record["secret"], access_key)
        except (ConfigError, KeyError, TypeError, ValueError):
            return [f"{data_dir / 'store.key'} cannot open the API key secrets in {path} "
                    f"(first: {access_key}); restore store.key from the same backup as "
                    "the store"]
    return []


def free_space_problem(data_dir: Path) -> str | None:
    """Why writing in data_dir cannot work right now, or None."""
    try:
        st = os.statvfs(data_dir)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
        return DiskFull(f"the disk holding {data_dir} is full "
                        f"({st.f_bavail * st.f_frsize // 1024} KiB free); free some space "
                        "and start again").message
    return None


def check_before_start(data_dir: Path) -> None:
    """Refuse to start (one line, naming the file and the remedy) on the first problem."""
    problems = findings(data_dir)
    if problems:
        more = f" ({len(problems) - 1} more: run nimbus doctor)" if len(problems) > 1 else ""
        raise ConfigError(f"refusing to start: {problems[0]}{more}")
    full = free_space_problem(data_dir) if Path(data_dir).exists() else None
    if full:
        raise DiskFull(f"refusing to start: {full}")
