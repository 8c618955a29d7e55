"""TLS against uvicorn with certificates made here: a private CA, verification off, mutual TLS,
and a failed handshake told apart from a refused connection."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from real_servers import uvicorn_echo
from test_conformance import one

from blastradius.cluster.scenario import parse_target
from blastradius.workers.template import RequestTemplate, Tls


def served(outcome: tuple) -> bool:
    """A 200 with no error, ok (the echo's body length varies)."""
    status, error, _, ok = outcome
    return (status, error, ok) == (200, "", True)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(subject, issuer, key, signer, ca: bool, sans=()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("blastradius test CA", "blastradius test CA", ca_key, ca_key, ca=True)
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    files = {"ca.pem": _pem(ca), "ca.key": _key_pem(ca_key)}
    for who, extra in (("server", sans), ("client", ())):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(who, "blastradius test CA", key, ca_key, ca=False, sans=extra)
        files[f"{who}.pem"], files[f"{who}.key"] = _pem(cert), _key_pem(key)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return {name: out / name for name in files}


@pytest.fixture(scope="module")
def https(pki, tmp_path_factory):
    tls = {"ssl-certfile": str(pki["server.pem"]), "ssl-keyfile": str(pki["server.key"])}
    with uvicorn_echo(tmp_path_factory.mktemp("log") / "log", tls) as url:
        yield url


def test_a_private_ca_verifies(https, pki):
    tls = Tls(ca_pem=pki["ca.pem"].read_text())
    assert served(one(RequestTemplate(f"{https}/x"), tls=tls))


def test_without_the_ca_the_handshake_fails_as_tls_not_connect(https):
    assert one(f"{https}/x") == (0, "tls", 0, False)


def test_verification_can_be_turned_off(https):
    assert served(one(f"{https}/x", tls=Tls(verify=False)))


def test_a_refused_port_is_connect_over_https_too():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert one(f"https://127.0.0.1:{port}/", tls=Tls(verify=False)) == (0, "connect", 0, False)


def test_https_to_a_plain_http_server_is_tls(tmp_path):
    with uvicorn_echo(tmp_path / "log") as url:
        port = url.rsplit(":", 1)[1]
        assert one(f"https://127.0.0.1:{port}/", tls=Tls(verify=False)) == (0, "tls", 0, False)


def test_mutual_tls_with_a_client_certificate_from_the_scenario(pki, tmp_path):
    tls = {
        "ssl-certfile": str(pki["server.pem"]),
        "ssl-keyfile": str(pki["server.key"]),
        "ssl-ca-certs": str(pki["ca.pem"]),
        "ssl-cert-reqs": "2",  # required
    }
    with uvicorn_echo(tmp_path / "log", tls) as url:
        target = parse_target(
            {
                "name": "mtls",
                "url": f"{url}/x",
                "tls": {"ca": "ca.pem", "cert": "client.pem", "key": "client.key"},
            },
            "targets[0]",
            base=pki["ca.pem"].parent,
        )
        assert served(one(target.requests[0], tls=target.tls))


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"ca": "server.key"}, r"^targets\[0\]\.tls\.ca: not a PEM certificate$"),
        ({"ca": "nope.pem"}, r"^targets\[0\]\.tls\.ca: cannot read 'nope.pem'"),
        ({"cert": "client.pem"}, r"^targets\[0\]\.tls\.cert: a client certificate needs both"),
        ({"verify": "no"}, r"^targets\[0\]\.tls\.verify: expected true or false$"),
        ({"ca": "ca.pem", "verify": False}, r"^targets\[0\]\.tls\.ca: give ca or verify"),
        ({"pin": "x"}, r"^targets\[0\]\.tls\.pin: unknown key"),
    ],
)
def test_bad_tls_options_are_one_line_naming_the_field(pki, tls, message):
    document = {"name": "t", "url": "https://127.0.0.1:1/", "tls": tls}
    with pytest.raises(ValueError, match=message):
        parse_target(document, "targets[0]", base=pki["ca.pem"].parent)


# --- found by mutation testing (.ci/mutate requests) ------------------------------------------


def test_tls_verifies_by_default_and_trusts_a_given_ca_without_verify(pki):
    import ssl

    assert Tls().verify is True
    assert Tls().context().verify_mode == ssl.CERT_REQUIRED
    assert Tls(ca_pem=pki["ca.pem"].read_text()).context().verify_mode == ssl.CERT_REQUIRED
    off = Tls(verify=False).context()
    assert (off.verify_mode, off.check_hostname) == (ssl.CERT_NONE, False)
    assert parse_target(
        {"name": "t", "url": "https://h/", "tls": {"ca": "ca.pem"}},
        "targets[0]",
        base=pki["ca.pem"].parent,
    ).tls.verify


@pytest.mark.parametrize("given", ["cert", "key"])
def test_a_client_certificate_needs_both_halves(pki, given):
    halves = {"cert_pem": pki["client.pem"].read_text(), "key_pem": pki["client.key"].read_text()}
    with pytest.raises(ValueError, match=r"^tls\.cert: a client certificate needs both"):
        Tls(**{f"{given}_pem": halves[f"{given}_pem"]})


def test_a_certificate_and_a_key_that_do_not_belong_together_are_refused(pki):
    with pytest.raises(ValueError, match=r"^tls\.cert: the certificate and key do not load$"):
        Tls(cert_pem=pki["client.pem"].read_text(), key_pem=pki["server.key"].read_text())


def test_the_client_key_is_written_nowhere_but_a_private_file_gone_once_read(
    pki, tmp_path, monkeypatch
):
    """ssl loads a key only from a file: it is mode 0600 while read, and gone after."""
    import ssl
    import stat
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    modes = []
    load = ssl.SSLContext.load_cert_chain

    def watched(context, certfile, *args, **kwargs):
        modes.append(stat.S_IMODE(Path(certfile).stat().st_mode))
        return load(context, certfile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", watched)
    tls = Tls(cert_pem=pki["client.pem"].read_text(), key_pem=pki["client.key"].read_text())
    assert modes and set(modes) == {0o600}
    assert list(tmp_path.iterdir()) == []
    assert "PRIVATE KEY" not in repr(tls)
    assert tls.redacted().to_json() == {"verify": True, "ca": False, "cert": True}
    assert Tls(ca_pem=pki["ca.pem"].read_text()).redacted().to_json()["ca"] is True
