"""The flags of commands that call a running server (predict, score --target) and the sibyl.client they open."""

from __future__ import annotations

import argparse

from sibyl.client import Client, Tls
from sibyl.errors import InvalidArgument


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", help="PEM CA bundle: connect with TLS and trust this CA")
    parser.add_argument("--tls-cert", help="PEM client certificate, for a server that wants mutual TLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--token", help="bearer token sent as 'authorization: Bearer TOKEN'")


def open_client(args: argparse.Namespace, timeout_s: float | None) -> Client:
    """Plaintext unless --tls-ca is given; --tls-cert/--tls-key add a client certificate (mutual TLS)."""
    if not args.tls_ca and (args.tls_cert or args.tls_key):
        raise InvalidArgument("--tls-cert/--tls-key need --tls-ca (the CA that signed the server certificate)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidArgument("give --tls-cert and --tls-key together (client certificate for mutual TLS)")
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    return Client(args.target, timeout_s=timeout_s, token=args.token, tls=tls)
