"""An openssl CA with the certificates and kubeconfigs each component of the node needs."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.process import run
from harness.system import require_tool

DAYS = "3650"
# P-256 keys: generating a dozen RSA keys costs seconds on a busy 2-core machine, these cost none.
_NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


@dataclass(frozen=True)
class Client:
    """A client identity: the certificate's CN is the user, each O a group."""

    name: str
    user: str
    groups: Sequence[str] = ()


def _openssl() -> str:
    return require_tool("openssl", ["openssl"])


def subject(common_name: str, groups: Sequence[str] = ()) -> str:
    """An openssl subject: one O per group, then the CN."""
    return "".join(f"/O={group}" for group in groups) + f"/CN={common_name}"


def make_ca(folder: Path, name: str = "movierec-node-ca") -> None:
    """ca.crt/ca.key in ``folder`` (kept when they exist)."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "ca.crt").exists() and (folder / "ca.key").exists():
        return
    run(
        [
            _openssl(),
            "req",
            "-x509",
            *_NEW_KEY,
            "-keyout",
            folder / "ca.key",
            "-out",
            folder / "ca.crt",
            "-subj",
            f"/CN={name}",
            "-days",
            DAYS,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ],
        what="making the cluster CA",
    )
    (folder / "ca.key").chmod(0o600)


def issue(folder: Path, name: str, subject: str, sans: Sequence[str] = ()) -> None:
    """``name``.crt/.key signed by the CA; a serving (and client) cert when ``sans`` are given."""
    openssl = _openssl()
    csr = folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    key = folder / f"{name}.key"
    run(
        [openssl, "req", "-new", *_NEW_KEY, "-keyout", key, "-out", csr, "-subj", subject],
        what=f"making the {name} key",
    )
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature"]
    if sans:
        lines += [f"subjectAltName={','.join(sans)}", "extendedKeyUsage=serverAuth,clientAuth"]
    else:
        lines.append("extendedKeyUsage=clientAuth")
    ext.write_text("\n".join(lines) + "\n")
    ca: list[str | Path] = ["-CA", folder / "ca.crt", "-CAkey", folder / "ca.key"]
    serial = ["-set_serial", str(secrets.randbits(63)), "-days", DAYS]
    run(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            csr,
            *ca,
            *serial,
            "-extfile",
            ext,
            "-out",
            folder / f"{name}.crt",
        ],
        what=f"signing the {name} certificate",
    )
    csr.unlink()
    ext.unlink()
    key.chmod(0o600)


def make_signing_key(folder: Path) -> None:
    """sa.key/sa.pub: the key pair service-account tokens are signed with."""
    openssl = _openssl()
    run(
        [openssl, "genpkey", "-algorithm", "EC", *_NEW_KEY[2:4], "-out", folder / "sa.key"],
        what="making the service-account signing key",
    )
    run(
        [openssl, "pkey", "-in", folder / "sa.key", "-pubout", "-out", folder / "sa.pub"],
        what="writing the service-account public key",
    )
    (folder / "sa.key").chmod(0o600)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path, *, pki: Path, server: str, name: str, cluster: str, namespace: str = "default"
) -> Path:
    """A self-contained kubeconfig (certificates embedded) for client ``name`` of ``pki``."""
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {_b64(pki / "ca.crt")}
users:
- name: {name}
  user:
    client-certificate-data: {_b64(pki / f"{name}.crt")}
    client-key-data: {_b64(pki / f"{name}.key")}
contexts:
- name: {cluster}
  context:
    cluster: {cluster}
    user: {name}
    namespace: {namespace}
current-context: {cluster}
"""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.chmod(0o600)
    temporary.replace(path)
    return path
