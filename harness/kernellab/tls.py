"""TLS material for one lab: a CA made for it, a server certificate for the guest's dockerd and
a client certificate for the user. dockerd runs with --tlsverify, so only a holder of the
client key (0600, in the user's own 0700 folder) can talk to it; the forwarded port is on
127.0.0.1 only. Made afresh at every `up`; the CA's key is deleted once both are signed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from harness.kernellab import proc

DAYS = "825"
_EC = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
# What strict verifiers (urllib3 2, so docker-py; Python 3.13) require of a chain,
# beyond what openssl's defaults give: key usage on every certificate, key identifiers.
_LEAF = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
         "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
SERVER_EXT = _LEAF + "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = _LEAF + "extendedKeyUsage=clientAuth\n"


def commands(d: Path, name: str) -> list[list[str]]:
    """openssl calls, in order, that fill d: ca.pem, server/{ca,cert,key}.pem, client/{ca,cert,key}.pem.

    Both sides' files have the names dockerd's flags and DOCKER_CERT_PATH expect."""
    ca_key, ca = d / "ca-key.pem", d / "ca.pem"
    out = [["openssl", "genpkey", *_EC, "-out", str(ca_key)],
           ["openssl", "req", "-new", "-x509", "-key", str(ca_key), "-days", DAYS,
            # '+' joins attributes in -subj (6.12.117+deb12 is in lab names): escape it.
            "-subj", f"/CN=harness kernel-lab {name.replace('+', chr(92) + '+')} CA", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", str(ca)]]
    for side, cn in (("server", "localhost"), ("client", "harness kernel-lab client")):
        key, csr, cert = d / side / "key.pem", d / side / "req.csr", d / side / "cert.pem"
        out += [["openssl", "genpkey", *_EC, "-out", str(key)],
                ["openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={cn}", "-out", str(csr)],
                ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-set_serial", "0x" + secrets.token_hex(8), "-days", DAYS,
                 "-extfile", str(d / side / "ext.cnf"), "-out", str(cert)]]
    return out


@contextlib.contextmanager
def _owner_only() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def make(d: Path, name: str) -> None:
    """Fresh material in d (client/ is a DOCKER_CERT_PATH; server/ goes to the guest)."""
    proc.need("openssl")
    with _owner_only():
        for side, ext in (("server", SERVER_EXT), ("client", CLIENT_EXT)):
            (d / side).mkdir(parents=True, exist_ok=True)
            (d / side / "ext.cnf").write_text(ext)
        for argv in commands(d, name):
            proc.run(argv, "making the lab's TLS certificates")
        for side in ("server", "client"):
            (d / side / "req.csr").unlink()
            (d / side / "ext.cnf").unlink()
            (d / side / "ca.pem").write_bytes((d / "ca.pem").read_bytes())
        (d / "ca-key.pem").unlink()
        (d / "ca.pem").unlink()
    for f in d.rglob("*"):
        f.chmod(0o700 if f.is_dir() else 0o600)
    d.chmod(0o700)
