"""The one certificate factory of the tests: a throwaway CA (EC P-256) that issues loopback
server certificates (registries, token servers, kube-apiserver, a site's gateway) and client
certificates (kube-apiserver's x509 identities), and the client TLS context that trusts it.

Used by both harnesses (:mod:`tests.support.registry`, :mod:`tests.support.cluster`), which
re-export the names they always offered (``new_ca``, ``CertificateAuthority``,
``issue_client_cert``, ``tls_context``).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertificateAuthority:
    """A throwaway CA (EC P-256) that issues loopback server certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_file: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue_server_cert(
        self,
        directory: Path,
        name: str,
        hosts: Iterable[str] = ("127.0.0.1", "localhost"),
    ) -> tuple[Path, Path]:
        """Write ``NAME.crt`` (leaf then CA) and ``NAME.key`` for ``hosts``; return their paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        cert = leaf(
            self,
            key,
            [x509.NameAttribute(NameOID.COMMON_NAME, next(iter(hosts)))],
            ExtendedKeyUsageOID.SERVER_AUTH,
            sans,
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_file = directory / f"{name}.crt"
        key_file = directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA."""
        return ssl.create_default_context(cafile=str(self.cert_file))


def new_ca(directory: Path, name: str = "kferry test CA") -> CertificateAuthority:
    """Create a CA and write its certificate to ``DIRECTORY/ca.crt``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / "ca.crt"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CertificateAuthority(key=key, cert=cert, cert_file=cert_file)


def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def leaf(
    ca: CertificateAuthority,
    key: ec.EllipticCurvePrivateKey,
    subject: list[x509.NameAttribute[str]],
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """A 30-day leaf certificate for ``key`` signed by ``ca``: a server one (``SERVER_AUTH``,
    with ``sans``) or a client one (``CLIENT_AUTH``, identity in ``subject``)."""
    now = datetime.datetime.now(datetime.UTC)
    server = usage == ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=server,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
    ).sign(ca.key, hashes.SHA256())


def write_secret(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def issue_client_cert(
    ca: CertificateAuthority, directory: Path, name: str, user: str, groups: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``NAME.crt``/``NAME.key``: a client certificate for ``user`` (CN) in ``groups``
    (O), which is how kube-apiserver reads an x509 identity. Returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    cert = leaf(ca, key, subject, ExtendedKeyUsageOID.CLIENT_AUTH)
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / f"{name}.crt"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, write_secret(directory / f"{name}.key", pem_key(key))


def tls_context(ca_file: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context trusting only ``ca_file``, presenting ``cert``/``key`` if given. (httpx
    ignores ``cert=`` when ``verify`` is a path, so always hand it a context.)"""
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context
