"""A throwaway certificate authority for TLS tests: a CA, a server certificate for localhost/127.0.0.1, a client
certificate from the same CA and one from a stranger CA, written as PEM files the server settings point at."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Pair = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
    )


def make_ca(cn: str) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(cn, _name(cn), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca: Pair, cn: str, server: bool) -> Pair:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(cn, ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def cert_pem(pair: Pair) -> bytes:
    return pair[1].public_bytes(serialization.Encoding.PEM)


def key_pem(pair: Pair) -> bytes:
    return pair[0].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Pki:
    """One test's certificates, written under root: ca.pem, server.pem and server.key."""

    def __init__(self, root: Path) -> None:
        root.mkdir()
        self.root = root
        self.ca, self.other_ca = make_ca("sibyl test ca"), make_ca("stranger ca")
        self.server, self.client = issue(self.ca, "sibyl", True), issue(self.ca, "client", False)
        self.stranger = issue(self.other_ca, "stranger", False)
        self.ca_file = root / "ca.pem"
        self.ca_file.write_bytes(cert_pem(self.ca))
        self.cert_file, self.key_file = root / "server.pem", root / "server.key"
        self.cert_file.write_bytes(cert_pem(self.server))
        self.key_file.write_bytes(key_pem(self.server))

    def settings(self, mutual: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"tls_cert": str(self.cert_file), "tls_key": str(self.key_file)}
        if mutual:
            out["tls_client_ca"] = str(self.ca_file)
        return out
