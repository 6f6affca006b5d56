"""A small CA and the HTTPS certificate of pebble's ACME endpoint (WFE).

certbot must verify pebble like it verifies Let's Encrypt, so the suite gives it a CA bundle
(REQUESTS_CA_BUNDLE) instead of turning verification off. Made with the openssl CLI on the host.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = ("pebble", "localhost")
DAYS = 3650


@dataclass(frozen=True)
class PebblePki:
    ca_pem: str
    cert_pem: str
    key_pem: str


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pebble_pki(label: str) -> PebblePki:
    """A fresh CA (named after `label`, the image hash) and a server certificate for pebble/localhost."""
    with tempfile.TemporaryDirectory(prefix="standin-pki-") as tmp:
        work = Path(tmp)
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl(
            "req", "-x509", *ec, "-days", str(DAYS), "-keyout", "ca.key", "-out", "ca.pem",
            "-subj", f"/CN=scaffold stand-in pebble CA {label}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash",
            cwd=work,
        )  # fmt: skip
        _openssl("req", *ec, "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=pebble", cwd=work)
        alt_names = ",".join(f"DNS:{name}" for name in SERVER_NAMES) + ",IP:127.0.0.1,IP:::1"
        (work / "server.ext").write_text(
            f"subjectAltName={alt_names}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid:always\n"
        )
        _openssl(
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", str(DAYS), "-extfile", "server.ext", "-out", "cert.pem",
            cwd=work,
        )  # fmt: skip
        return PebblePki(
            ca_pem=(work / "ca.pem").read_text(),
            cert_pem=(work / "cert.pem").read_text(),
            key_pem=(work / "key.pem").read_text(),
        )
