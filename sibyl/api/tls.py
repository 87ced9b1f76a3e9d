"""TLS and mutual TLS for the gRPC port, with certificates re-read from disk when they change.

gRPC calls the fetcher before every new connection's handshake; it costs a few stat() calls and reloads
only when a file's (mtime, size, inode) changed. A half-written rotation (new cert, old key) is refused by
a pairing check and retried on the next connection, so the old certificate keeps serving meanwhile.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc

from sibyl.config import SecuritySettings
from sibyl.errors import ConfigError

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int, int], ...]


class CertificateFiles:
    """Server key + certificate chain, and optionally the CA bundle client certificates must chain to."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._lock = threading.Lock()  # handshakes of several connections may call fetch() at once
        self._stamp: Stamp = ()
        self.reloads = 0
        self.config = self._load()  # at start-up a bad file is a ConfigError, not a warning

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def _paths(self) -> list[Path]:
        return [self.cert, self.key] + ([self.client_ca] if self.client_ca else [])

    def _current_stamp(self) -> Stamp:
        stamps = []
        for path in self._paths():
            st = os.stat(path)
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        try:
            stamp = self._current_stamp()
            cert, key = self.cert.read_bytes(), self.key.read_bytes()
            ca = self.client_ca.read_bytes() if self.client_ca else None
        except OSError as exc:
            raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
        _check_pair(self.cert, self.key)
        if self.client_ca is not None:
            _check_ca(self.client_ca)
        self._stamp = stamp
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """New configuration when the files changed and are usable; None keeps the current one."""
        with self._lock:
            try:
                if self._current_stamp() == self._stamp:
                    return None
                self.config = self._load()
            except (OSError, ConfigError) as exc:
                # Mid-rotation or a bad file: keep serving the old certificate, try again on the next connection.
                log.warning("TLS files changed but cannot be used yet; keeping the current ones: %s", exc)
                return None
            self.reloads += 1
            log.info("TLS certificate reloaded", extra={"cert": str(self.cert), "reloads": self.reloads})
            return self.config


def _check_pair(cert: Path, key: Path) -> None:
    """The stdlib refuses a key that does not match the certificate: a cheap guard before gRPC sees it."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(f"TLS key {key} does not fit certificate {cert} (or is not PEM): {exc.reason}") from None


def _check_ca(ca: Path) -> None:
    try:
        ssl.create_default_context(cafile=str(ca))
    except ssl.SSLError as exc:
        raise ConfigError(f"TLS client CA {ca} holds no usable PEM certificate: {exc.reason}") from None


def certificate_files(security: SecuritySettings) -> CertificateFiles | None:
    """None when TLS is off; a ConfigError naming the setting when it is half configured."""
    if not security.tls_cert and not security.tls_key:
        if security.tls_client_ca:
            raise ConfigError("security.tls_client_ca (mutual TLS) needs security.tls_cert and security.tls_key too")
        return None
    if not (security.tls_cert and security.tls_key):
        raise ConfigError("TLS needs both security.tls_cert and security.tls_key (SIBYL_SECURITY__TLS_CERT/_KEY)")
    ca = Path(security.tls_client_ca) if security.tls_client_ca else None
    return CertificateFiles(Path(security.tls_cert), Path(security.tls_key), ca)


def server_credentials(files: CertificateFiles) -> grpc.ServerCredentials:
    # grpc's fetcher may return None to keep the current configuration (its docs); the stub says it may not.
    fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], files.fetch)
    return grpc.dynamic_ssl_server_credentials(files.config, fetch, require_client_authentication=files.mutual)
