"""`--tls-self-signed`: a CA and a server certificate made once in the data directory."""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825
# The key types a certificate can be signed with (cryptography's CertificateIssuerPrivateKeyTypes).
ISSUER_KEYS = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    dsa.DSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a key file left by an older version may be open to others
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def self_signed(directory: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca.crt, server.crt, server.key), creating them on first use.

    The server certificate is made again when the host list changes; the CA is kept, so
    clients that trust it keep working.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # the keys below are secrets
    for existing_key in (directory / "ca.key", directory / "server.key"):
        if existing_key.exists():
            existing_key.chmod(0o600)
    ca_crt, ca_key = directory / "ca.crt", directory / "ca.key"
    crt, key_path, hosts_file = directory / "server.crt", directory / "server.key", directory / "hosts"
    now = datetime.now(UTC)
    if not ca_crt.exists():
        ca_private = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Berth registry CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_private, hashes.SHA256())
        )
        _write_key(ca_key, ca_private)
        ca_crt.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    wanted = ",".join(hosts)
    if not crt.exists() or not hosts_file.exists() or hosts_file.read_text() != wanted:
        ca = x509.load_pem_x509_certificate(ca_crt.read_bytes())
        ca_signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
        if not isinstance(ca_signer, ISSUER_KEYS):
            raise ValueError(f"{ca_key}: a {type(ca_signer).__name__} cannot sign certificates")
        server_key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca.subject)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_signer, hashes.SHA256())
        )
        _write_key(key_path, server_key)
        crt.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        hosts_file.write_text(wanted)
    return ca_crt, crt, key_path
