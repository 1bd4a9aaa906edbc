"""TLS material for the gRPC server and its clients (PEM files), and the loopback rule.

    server: --tls-cert server.pem --tls-key server.key [--tls-client-ca clients-ca.pem]   (mTLS with the last)
    client: --tls-ca ca.pem [--tls-cert client.pem --tls-key client.key]

A server on a non-loopback address without TLS starts only with ``--insecure``:
tokens would otherwise cross the network in the clear.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc

from hub.errors import InvalidArgument


@dataclass(frozen=True)
class ServerTls:
    cert: str  # PEM certificate chain of the server
    key: str  # PEM private key
    client_ca: str | None = None  # PEM CA bundle: clients must present a certificate it signed (mutual TLS)

    def credentials(self) -> grpc.ServerCredentials:
        chain = _read("tls_cert", self.cert), _read("tls_key", self.key)
        if self.client_ca is None:
            return grpc.ssl_server_credentials([(chain[1], chain[0])])
        return grpc.ssl_server_credentials([(chain[1], chain[0])], root_certificates=_read("tls_client_ca", self.client_ca),
                                           require_client_auth=True)


@dataclass(frozen=True)
class ClientTls:
    ca: str | None = None  # PEM CA bundle to verify the server (None: the system's roots)
    cert: str | None = None  # client certificate and key, for servers that require mutual TLS
    key: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise InvalidArgument("tls_cert", "a client certificate needs its key and the key its certificate; give both")
        return grpc.ssl_channel_credentials(
            root_certificates=_read("tls_ca", self.ca) if self.ca else None,
            private_key=_read("tls_key", self.key) if self.key else None,
            certificate_chain=_read("tls_cert", self.cert) if self.cert else None,
        )


def _read(field: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise InvalidArgument(field, f"cannot read {path} ({exc.strerror}); give a PEM file") from None


def is_loopback(address: str) -> bool:
    """True when ``HOST:PORT`` listens on loopback only (localhost, 127.0.0.0/8, ::1)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(address: str, tls: object, insecure: bool) -> None:
    """Refuse plaintext on a non-loopback address unless ``insecure`` says so explicitly."""
    if tls is None and not insecure and not is_loopback(address):
        raise InvalidArgument(
            "address", f"{address} is reachable from other machines, and without TLS tokens and images cross the network "
            "in the clear; serve with --tls-cert/--tls-key, or pass --insecure to accept that (e.g. behind a TLS proxy)"
        )
