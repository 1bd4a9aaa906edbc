"""TLS and mutual TLS with a throwaway CA; plaintext refused; non-loopback addresses need TLS or --insecure."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import errors
from hub.client import Client
from hub.tls import ClientTls, ServerTls, check_exposure, is_loopback
from tests.server.harness import IMAGE_MODEL, TinyHub, running_server
from tests.server.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_server_accepts_the_client_with_the_ca_and_refuses_plaintext(tiny: TinyHub, pki: Pki) -> None:
    tls = ServerTls(str(pki.server_cert), str(pki.server_key))
    with running_server(tiny, batch_window_ms=0, tls=tls) as server:
        with server.client(timeout=30, tls=ClientTls(ca=str(pki.ca))) as client:
            assert client.generate(IMAGE_MODEL, seed=0, steps=2).samples.shape == (1, 1, 8, 8)
        with server.client(timeout=5) as plaintext, pytest.raises(errors.Unavailable):
            plaintext.list_plugins()
        other = make_pki(pki.ca.parent / "other").ca  # a CA that did not sign the server's certificate
        with server.client(timeout=5, tls=ClientTls(ca=str(other))) as wrong_ca, pytest.raises(errors.Unavailable):
            wrong_ca.list_plugins()


def test_mutual_tls_refuses_a_client_without_a_certificate(tiny: TinyHub, pki: Pki) -> None:
    tls = ServerTls(str(pki.server_cert), str(pki.server_key), client_ca=str(pki.ca))
    with running_server(tiny, batch_window_ms=0, tls=tls) as server:
        with server.client(timeout=30, tls=ClientTls(str(pki.ca), str(pki.client_cert), str(pki.client_key))) as client:
            assert IMAGE_MODEL in [m.name for m in client.list_models()]
        with server.client(timeout=5, tls=ClientTls(ca=str(pki.ca))) as anonymous, pytest.raises(errors.Unavailable):
            anonymous.list_plugins()


def test_cli_generate_connects_with_tls(tiny: TinyHub, pki: Pki, tmp_path: Path) -> None:
    from hub.server.commands import generate_remote

    with running_server(tiny, batch_window_ms=0, tls=ServerTls(str(pki.server_cert), str(pki.server_key))) as server:
        samples, described = generate_remote(server.address, IMAGE_MODEL, num_samples=2, seed=0, steps=2,
                                             home=tiny.home, tls_ca=str(pki.ca))
    assert samples.shape == (2, 1, 8, 8) and described.startswith(IMAGE_MODEL)


def test_a_non_loopback_address_needs_tls_or_insecure(pki: Pki) -> None:
    assert is_loopback("127.0.0.1:1") and is_loopback("localhost:1") and is_loopback("[::1]:1")
    assert not is_loopback("0.0.0.0:1") and not is_loopback("[::]:1") and not is_loopback("10.1.2.3:1")
    with pytest.raises(errors.InvalidArgument, match="--insecure"):
        check_exposure("0.0.0.0:50051", None, insecure=False)
    check_exposure("0.0.0.0:50051", None, insecure=True)
    check_exposure("0.0.0.0:50051", ServerTls(str(pki.server_cert), str(pki.server_key)), insecure=False)


def test_serve_refuses_plaintext_on_all_interfaces(capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from hub.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--home", str(tmp_path), "serve", "--address", "0.0.0.0:0"])
    assert exited.value.code == 1 and "--insecure" in capfd.readouterr().err
    assert not (tmp_path / "registry.db").exists()  # refused before opening anything
