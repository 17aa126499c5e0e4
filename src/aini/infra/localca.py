"""A local certificate authority for the `local` target (`tls.challenge: local`).

No public CA can validate names such as chat.localhost, so AINI makes its own CA once
(kept in the project's .aini/local-ca/, the key 0600) and issues one server certificate
naming every routed subdomain. The user trusts the CA once, in the browser or the
system store; the path is printed for that. The CA is name-constrained to the project's
domain: were its key ever stolen, it could not vouch for any other site.

Pure parts (what to issue) are separate from the file handling (when to issue).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import catalog
from ..errors import AiniError
from ..project import write_private

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
LEAF_CERT = "local.crt"
LEAF_KEY = "local.key"
CA_DAYS = 3650
LEAF_DAYS = 365  # browsers refuse server certificates valid for more than 398 days
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class LocalCerts:
    ca_cert: Path  # trust this one
    cert: Path  # the server certificate (leaf + CA), PEM
    key: Path  # its key, 0600
    names: tuple[str, ...]
    issued: bool  # a new server certificate was written by this call
    ca_created: bool


def hostnames(config) -> list[str]:
    """Every name Traefik answers for: <subdomain>.<domain> of each enabled route."""
    names = [f"{catalog.subdomain_of(s, config)}.{config.domain}" for s in catalog.enabled(config)
             if catalog.routed(s, config)]
    return sorted(set(names))


def san_names(domain: str, hosts: Iterable[str]) -> list[str]:
    """The leaf's DNS names: each host, plus `*.<domain>` where a wildcard is valid (browsers
    refuse a wildcard directly under a single-label name such as `localhost`)."""
    names = sorted(set(hosts))
    if "." in domain:
        names.append(f"*.{domain}")
    return names


def ensure(directory: Path, domain: str, hosts: Iterable[str], now: dt.datetime | None = None) -> LocalCerts:
    """Create the CA if missing (or made for another domain), and a server certificate if
    missing, expiring within 30 days, or not naming every host. Idempotent."""
    from cryptography.hazmat.primitives import serialization

    now = now or dt.datetime.now(dt.timezone.utc)
    names = san_names(domain, hosts)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_cert_path, ca_key_path = directory / CA_CERT, directory / CA_KEY
    leaf_path, leaf_key_path = directory / LEAF_CERT, directory / LEAF_KEY

    ca_created = False
    ca = _load_ca(ca_cert_path, ca_key_path)
    if ca is None or not _constrained_to(ca[0], domain) or ca[0].not_valid_after_utc - RENEW_BEFORE < now:
        ca_key = _new_key()
        ca_cert = _ca_certificate(ca_key, domain, now)
        write_private(ca_key_path, _key_pem(ca_key))
        _write_public(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM).decode())
        ca, ca_created = (ca_cert, ca_key), True
    ca_cert, ca_key = ca

    issued = False
    if ca_created or not _leaf_ok(leaf_path, leaf_key_path, ca_cert, names, now):
        key = _new_key()
        leaf = _leaf_certificate(key, ca_cert, ca_key, names, now)
        write_private(leaf_key_path, _key_pem(key))
        chain = leaf.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
        _write_public(leaf_path, chain.decode())
        issued = True
    return LocalCerts(ca_cert_path, leaf_path, leaf_key_path, tuple(names), issued, ca_created)


def trust_hint(certs: LocalCerts) -> str:
    return (
        f"Local CA: {certs.ca_cert} — import it into your browser (or "
        f"`sudo cp {certs.ca_cert} /usr/local/share/ca-certificates/aini-local.crt && sudo update-ca-certificates`) "
        "to trust the workspace's certificates."
    )


# --------------------------------------------------------------------------- pure parts


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _ca_certificate(key, domain: str, now: dt.datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AINI local"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"AINI local CA for {domain}"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        # Only names under the project's domain: a stolen key cannot impersonate other sites.
        .add_extension(
            x509.NameConstraints(permitted_subtrees=[x509.DNSName(domain)], excluded_subtrees=None), critical=True
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf_certificate(key, ca_cert, ca_key, names: list[str], now: dt.datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _constrained_to(ca_cert, domain: str) -> bool:
    from cryptography import x509

    try:
        nc = ca_cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return False
    return [g.value for g in nc.permitted_subtrees or []] == [domain]


def _load_ca(cert_path: Path, key_path: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not (cert_path.exists() and key_path.exists()):
        return None
    _check_private(key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise AiniError(f"{cert_path.parent}: the local CA cannot be read ({type(exc).__name__}); "
                        "delete the directory to create a new CA (and trust the new one)") from None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise AiniError(f"{cert_path.parent}: the CA certificate and key do not match; delete the directory")
    return cert, key


def _leaf_ok(cert_path: Path, key_path: Path, ca_cert, names: list[str], now: dt.datetime) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not (cert_path.exists() and key_path.exists()):
        return False
    _check_private(key_path)
    try:
        leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):
        return False
    if leaf.public_key().public_numbers() != key.public_key().public_numbers():
        return False
    if leaf.issuer != ca_cert.subject or leaf.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    try:
        ca_cert.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    except Exception:  # noqa: BLE001 - any failure: issue a new one
        return False
    have = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    return sorted(have) == sorted(names)


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise AiniError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")


def _write_public(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(path)
