"""The farm's certificate authority, member certificates and join files (``cryptography``).

Every farm connection is mutual TLS (TLS 1.3) where each side must present a certificate signed
by this installation's authority; dask.distributed checks the chain and nothing else (no host
names: a DHCP change breaks nothing). Keys are EC P-256, signatures SHA-256. Certificates carry
subject and authority key identifiers so they verify under strict X.509 checking too.

Files in the farm folder (``~/.config/splatstudio/farm`` or ``$SPLATSTUDIO_FARM_DIR``; the folder
0700, every file 0600):

* ``ca-key.pem``: the authority's private key; never leaves this machine.
* ``ca.pem``: the authority's certificate.
* ``coordinator.json``: the scheduler address and the coordinator's certificate and key, same
  layout as a join file.
* ``join.json``: what a peer needs (:class:`JoinFile`): ``schema``, ``farm_id`` (first 16 hex
  digits of the SHA-256 of the authority's DER certificate, for people to compare),
  ``scheduler`` (``["tls://IP:PORT"]``), ``ca``, ``cert`` and ``key`` (PEM), ``splatstudio``
  (version) and ``expires`` (ISO 8601, UTC).

Design: ``../shared/docs/FARM.md`` section 2.2.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import FarmError

SCHEMA = 1
DEFAULT_PORT = 8786
FARM_DIR_ENV = "SPLATSTUDIO_FARM_DIR"
CA_DAYS = 3650
MEMBER_DAYS = 825

__all__ = ["DEFAULT_PORT", "JoinFile", "default_address", "farm_dir", "farm_id", "init_farm",
           "issue_cert", "load_join", "make_ca", "parse_address", "write_private"]  # fmt: skip


def farm_dir(path: str | os.PathLike | None = None) -> Path:
    """The farm folder: `path`, else ``$SPLATSTUDIO_FARM_DIR``, else
    ``~/.config/splatstudio/farm``."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get(FARM_DIR_ENV)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "splatstudio" / "farm"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SplatStudio farm"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def make_ca(common_name: str = "SplatStudio farm CA", days: int = CA_DAYS) -> tuple[Any, Any]:
    """A new self-signed certificate authority.

    Returns:
        ``(certificate, private_key)`` (``cryptography`` objects; EC P-256, SHA-256, basic
        constraints CA with path length 0, key usage certificate and CRL signing).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def issue_cert(ca_cert: Any, ca_key: Any, common_name: str,
               days: int = MEMBER_DAYS) -> tuple[Any, Any]:
    """A member certificate signed by the authority, valid for TLS servers and clients (dask
    workers both listen and connect).

    Returns:
        ``(certificate, private_key)``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=True, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def _cert_pem(cert: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM).decode()


def _key_pem(key: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def farm_id(ca_cert: Any) -> str:
    """First 16 hex digits of the SHA-256 of the authority's DER certificate: what people
    compare to know two machines belong to the same farm."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(ca_cert.public_bytes(Encoding.DER)).hexdigest()[:16]


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"IP"``, ``"IP:PORT"`` or ``"tls://IP:PORT"`` -> ``(ip, port)``.

    Raises:
        FarmError: not an IP address (a farm binds one address, never a name or 0.0.0.0),
            or a bad port.
    """
    t = text.strip().removeprefix("tls://")
    host, _, port = t.rpartition(":") if t.count(":") == 1 or t.startswith("[") else (t, "", "")
    host = host.strip("[]") or t
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise FarmError(f"farm address {text!r}: expected an IP address such as "
                        "192.168.1.10 or 192.168.1.10:8786") from None
    if ip.is_unspecified:
        raise FarmError(f"farm address {text!r}: a farm listens on one address, not on all "
                        "interfaces; give this machine's LAN address")
    try:
        p = int(port) if port else default_port
    except ValueError:
        raise FarmError(f"farm address {text!r}: bad port {port!r}") from None
    if not 0 <= p <= 65535:
        raise FarmError(f"farm address {text!r}: port {p} out of range")
    return str(ip), p


def default_address() -> str:
    """This machine's address on its default route (the LAN address a peer would reach), found
    by routing a UDP socket to a documentation address (no packet is sent).

    Raises:
        FarmError: no network route; pass ``--address``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
        except OSError:
            ip = ""
    if not ip or ip.startswith("0."):
        raise FarmError("no network route to find this machine's LAN address: pass "
                        "--address IP (127.0.0.1 for a farm of this machine only)")
    return ip


@dataclass(frozen=True)
class JoinFile:
    """What a farm member needs to connect (see the module docstring for the JSON layout).

    Attributes:
        path: where it was read from (None when made in memory).
        farm_id: the authority's fingerprint (16 hex digits).
        scheduler: scheduler addresses, ``tls://IP:PORT``.
        ca: the authority's certificate, PEM.
        cert: this member's certificate, PEM.
        key: this member's private key, PEM (PKCS#8, unencrypted: the file is 0600).
        splatstudio: the version that wrote it.
        expires: the member certificate's end of validity, ISO 8601 UTC.
    """

    path: Path | None
    farm_id: str
    scheduler: tuple[str, ...]
    ca: str
    cert: str
    key: str
    splatstudio: str
    expires: str

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "farm_id": self.farm_id, "scheduler": list(self.scheduler),
                "ca": self.ca, "cert": self.cert, "key": self.key,
                "splatstudio": self.splatstudio, "expires": self.expires}  # fmt: skip

    def security(self) -> Any:
        """A ``distributed.Security`` for every role (scheduler, worker, client) with this
        member's certificate: encryption required, TLS 1.3 at least, the farm's authority the
        only one trusted."""
        import ssl

        from distributed.security import Security

        pem = self.cert + self.key  # dask takes the key appended to the certificate
        return Security(require_encryption=True, tls_ca_file=self.ca, tls_client_cert=pem,
                        tls_scheduler_cert=pem, tls_worker_cert=pem,
                        tls_min_version=ssl.TLSVersion.TLSv1_3)  # fmt: skip


def _member(ca_cert: Any, ca_key: Any, name: str, scheduler: list[str]) -> JoinFile:
    from .. import __version__

    cert, key = issue_cert(ca_cert, ca_key, name)
    return JoinFile(path=None, farm_id=farm_id(ca_cert), scheduler=tuple(scheduler),
                    ca=_cert_pem(ca_cert), cert=_cert_pem(cert), key=_key_pem(key),
                    splatstudio=__version__,
                    expires=cert.not_valid_after_utc.isoformat(timespec="seconds"))  # fmt: skip


def init_farm(directory: str | os.PathLike | None = None, address: str | None = None, *,
              rotate: bool = False) -> dict[str, Any]:
    """Create (or refresh) this installation's farm: authority, coordinator credentials and a
    join file for peers.

    A second call without `rotate` keeps the authority (join files already handed out stay
    valid) and writes fresh credentials for `address`; with `rotate` a new authority replaces
    the old one, so every earlier join file stops working.

    Args:
        directory: the farm folder (default :func:`farm_dir`).
        address: ``IP[:PORT]`` the scheduler will listen on (default :func:`default_address`,
            port 8786).
        rotate: make a new authority.

    Returns:
        ``{"dir", "join", "coordinator", "farm_id", "scheduler", "rotated", "created"}``.

    Raises:
        FarmError: a bad address, or an unreadable authority in an existing folder.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    d = farm_dir(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    ip, port = parse_address(address or default_address())
    host = f"[{ip}]" if ":" in ip else ip
    scheduler = [f"tls://{host}:{port}"]
    ca_key_path, ca_path = d / "ca-key.pem", d / "ca.pem"
    created = rotate or not (ca_key_path.exists() and ca_path.exists())
    if created:
        ca_cert, ca_key = make_ca()
        write_private(ca_key_path, _key_pem(ca_key))
        write_private(ca_path, _cert_pem(ca_cert))
    else:
        try:
            ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
            ca_key = load_pem_private_key(ca_key_path.read_bytes(), password=None)
        except (OSError, ValueError) as e:
            raise FarmError(f"{d}: cannot read the farm's authority ({e}); "
                            "`splatstudio farm init --rotate` makes a new one") from None
    coordinator = _member(ca_cert, ca_key, f"coordinator@{socket.gethostname()}", scheduler)
    member = _member(ca_cert, ca_key, "member", scheduler)
    write_private(d / "coordinator.json", json.dumps(coordinator.to_dict(), indent=1) + "\n")
    write_private(d / "join.json", json.dumps(member.to_dict(), indent=1) + "\n")
    return {"dir": str(d), "join": str(d / "join.json"), "coordinator": str(d / "coordinator.json"),
            "farm_id": coordinator.farm_id, "scheduler": scheduler, "rotated": rotate,
            "created": created}  # fmt: skip


def load_join(path: str | os.PathLike) -> JoinFile:
    """Read and check a join file (or ``coordinator.json``).

    Checks: JSON with the schema's fields; the member certificate is signed by the file's
    authority, is not expired, and belongs to the file's key; ``farm_id`` matches the authority.

    Raises:
        FarmError: the file is missing, unreadable, of another schema, expired, or inconsistent
            (the message names the file and what is wrong).
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FarmError(f"{p}: no such join file (made by `splatstudio farm init` on the "
                        "coordinator: copy its join.json here)") from None
    except (OSError, ValueError) as e:
        raise FarmError(f"{p}: not a readable join file ({e})") from None
    need = ("farm_id", "scheduler", "ca", "cert", "key")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or any(k not in data for k in need):
        raise FarmError(f"{p}: not a SplatStudio join file of schema {SCHEMA} (needs "
                        f"{', '.join(need)})")
    try:
        ca = x509.load_pem_x509_certificate(data["ca"].encode())
        cert = x509.load_pem_x509_certificate(data["cert"].encode())
        key = load_pem_private_key(data["key"].encode(), password=None)
    except (ValueError, TypeError, AttributeError) as e:
        raise FarmError(f"{p}: a certificate or key in it cannot be read ({e})") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise FarmError(f"{p}: its certificate is not signed by its farm authority") from None
    pub = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if pub != cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo):
        raise FarmError(f"{p}: its key does not belong to its certificate")
    if farm_id(ca) != data["farm_id"]:
        raise FarmError(f"{p}: farm_id {data['farm_id']} is not its authority's ({farm_id(ca)})")
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise FarmError(f"{p}: expired on {cert.not_valid_after_utc:%Y-%m-%d}; ask the "
                        "coordinator for a new join file (`splatstudio farm init`)")
    sched = data["scheduler"]
    if isinstance(sched, str):
        sched = [sched]
    if not sched or any(not str(a).startswith("tls://") for a in sched):
        raise FarmError(f"{p}: scheduler must be tls:// addresses, got {sched!r}")
    return JoinFile(path=p, farm_id=data["farm_id"], scheduler=tuple(map(str, sched)),
                    ca=data["ca"], cert=data["cert"], key=data["key"],
                    splatstudio=str(data.get("splatstudio", "")),
                    expires=cert.not_valid_after_utc.isoformat(timespec="seconds"))  # fmt: skip
