"""CURVE security on every socket of the link (docs/security.md).

Each side has a key pair in ZeroMQ's certificate format (`edgeloop keys generate NAME`: NAME.key holds the
public key, NAME.key_secret the public and the secret key, mode 0600). A side that connects a socket is a
CURVE client and names the binding side's public key; a side that binds is a CURVE server and runs a ZAP
authenticator on its sockets' own context that admits only the client keys on its allowlist (CURVE without
a ZAP handler would encrypt, but admit anyone).

The binding side counts the connections it refuses, by kind, and logs each kind once per socket (ZeroMQ
does not say who a failed handshake came from) and each refused client key once:

- `refused_plaintext`: a peer without CURVE (another mechanism, or one that hung up mid-handshake);
- `refused_unknown_key`: a CURVE client whose public key is not on the allowlist;
- `refused_handshake`: a handshake that fails its cryptography, e.g. a client holding the wrong server key.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)

ZAP_DOMAIN = "edgeloop"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
REFUSAL_COUNTERS = ("refused_plaintext", "refused_unknown_key", "refused_handshake")
# Refused client keys are logged once each, up to this many (a peer trying fresh keys cannot grow memory).
_MAX_LOGGED_KEYS = 256
_REFUSAL_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class SecurityError(ValueError):
    """A key file or key setting that cannot be used; the text names the setting and the file."""


@dataclass(frozen=True)
class LinkSecurity:
    """One side's CURVE keys (Z85 text): its own pair, the binding peer's public key for the sockets it
    connects, and the client keys admitted on the sockets it binds (key -> the file it came from)."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes | None = None
    allowed_clients: Mapping[bytes, str] = field(default_factory=dict)

    def require_server_key(self) -> bytes:
        """The binding side's public key; SecurityError without one (check before making sockets)."""
        if self.server_key is None:
            raise SecurityError("a socket that connects needs the binding side's public key (server key)")
        return self.server_key

    def secure_client(self, socket: zmq.Socket[bytes]) -> None:
        """Make `socket` (before it connects) a CURVE client of the binding side's key."""
        socket.curve_serverkey = self.require_server_key()
        socket.curve_secretkey = self.secret_key
        socket.curve_publickey = self.public_key


def _z85_key(value: bytes, label: str, path: Path, what: str) -> bytes:
    try:
        decoded = z85.decode(value) if len(value) == 40 else b""
    except (ValueError, KeyError, IndexError):
        decoded = b""
    if len(decoded) != 32:
        raise SecurityError(f"{label}: {path}: the {what} is not a 40-character Z85 CURVE key")
    return value


def _certificate(path: Path, label: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        kind = "is a folder, not a key file" if path.is_dir() else "key file not found"
        raise SecurityError(f"{label}: {path}: {kind} (`edgeloop keys generate NAME` makes a pair; a peer's "
                            f"public key is copied from the peer)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise SecurityError(f"{label}: {path}: cannot read the key file ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise SecurityError(f"{label}: {path}: not a ZeroMQ key file (no public-key line)") from exc
    return _z85_key(public, label, path, "public key"), (
        None if secret is None else _z85_key(secret, label, path, "secret key"))


def read_secret_key(path: Path, label: str) -> tuple[bytes, bytes]:
    """(public, secret) from a NAME.key_secret file that only its owner may read."""
    public, secret = _certificate(path, label)
    if secret is None:
        raise SecurityError(f"{label}: {path}: holds no secret key (give the {SECRET_SUFFIX} file, not the "
                            f"{PUBLIC_SUFFIX} one)")
    if zmq.curve_public(secret) != public:
        raise SecurityError(f"{label}: {path}: its public key does not belong to its secret key")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecurityError(f"{label}: {path}: a secret key others may read (mode {stat.S_IMODE(mode):04o}); "
                            f"run `chmod 600 {path}`")
    return public, secret


def read_public_key(path: Path, label: str) -> bytes:
    """The public key of a NAME.key file; a secret key file is refused, it belongs to its own side only."""
    public, secret = _certificate(path, label)
    if secret is not None:
        raise SecurityError(f"{label}: {path}: is a secret key file; give the peer's public key ({PUBLIC_SUFFIX})")
    return public


def read_allowlist(paths: Iterable[Path], label: str) -> dict[bytes, str]:
    """Client public keys from files and folders (every *.key in a folder); empty lists are refused."""
    allowed: dict[bytes, str] = {}
    for path in paths:
        files = sorted(path.glob(f"*{PUBLIC_SUFFIX}")) if path.is_dir() else [path]
        if not files:
            raise SecurityError(f"{label}: {path}: a folder without public key files (*{PUBLIC_SUFFIX})")
        for file in files:
            allowed[read_public_key(file, label)] = str(file)
    if not allowed:
        raise SecurityError(f"{label}: no client public keys listed, so no client could connect")
    return allowed


def generate_keys(name: str, out: Path) -> tuple[Path, Path]:
    """Write out/NAME.key (public) and out/NAME.key_secret (mode 0600); never overwrites a key."""
    if not name or Path(name).name != name or name.startswith("."):
        raise SecurityError(f"key name {name!r}: expected a plain file name such as 'runtime'")
    public, secret = out / f"{name}{PUBLIC_SUFFIX}", out / f"{name}{SECRET_SUFFIX}"
    for path in (public, secret):
        if path.exists():
            raise SecurityError(f"{path}: exists; refusing to overwrite a key (remove it or choose another name)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Written in a private (0700) folder and moved into place, so the secret is never readable by others.
        with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}-") as private:
            made_public, made_secret = zmq.auth.create_certificates(private, name)
            os.chmod(made_secret, 0o600)
            os.chmod(made_public, 0o644)
            os.replace(made_secret, secret)
            os.replace(made_public, public)
    except OSError as exc:
        raise SecurityError(f"{out}: cannot write keys ({exc.strerror or exc})") from exc
    return public, secret


class _Allowlist(ThreadAuthenticator):
    """The ZAP handler: admits the allowlisted CURVE client keys and logs each refused key once."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], allowed: Mapping[bytes, str]) -> None:
        super().__init__(context)
        self._clients = dict(allowed)
        self._logged: set[bytes] = set()
        self._address = ""
        self.configure_curve_callback(ZAP_DOMAIN, self)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "an unknown address"
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self._clients:
            return True
        if key not in self._logged and len(self._logged) < _MAX_LOGGED_KEYS:
            self._logged.add(key)
            log.warning("refused a CURVE client from %s: its public key %s is not on the allowlist "
                        "(counted as refused_unknown_key; logged once per key)", self._address, key.decode())
        return False


class CurveServer:
    """The binding side's gate on one context: the ZAP authenticator, and a monitor per secured socket that
    counts refused connections into `counters` (drained by `drain`, on the owner's thread)."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], security: LinkSecurity,
                 counters: dict[str, int]) -> None:
        if not security.allowed_clients:
            raise SecurityError("a socket that binds needs an allowlist of client public keys")
        self._security = security
        self._counters = counters
        counters.update({name: 0 for name in REFUSAL_COUNTERS})
        self._monitors: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]] = []
        self._logged: set[tuple[str, str]] = set()
        self._authenticator = _Allowlist(context, security.allowed_clients)
        try:
            self._authenticator.start()
        except zmq.ZMQError as exc:  # one ZAP handler per context
            self._authenticator.stop()
            raise SecurityError(f"cannot start the ZAP authenticator on this context ({exc}); a context carries "
                                f"one, so give each binding link its own context") from exc

    def secure(self, socket: zmq.Socket[bytes]) -> None:
        """Make `socket` (before it binds) a CURVE server behind the allowlist, and watch its refusals."""
        socket.curve_server = True
        socket.curve_secretkey = self._security.secret_key
        socket.curve_publickey = self._security.public_key
        socket.zap_domain = ZAP_DOMAIN.encode()
        self._monitors.append((socket, socket.get_monitor_socket(_REFUSAL_EVENTS)))

    def drain(self) -> None:
        """Count (and log once per kind and socket) every refusal reported since the last call; never blocks."""
        for _, monitor in self._monitors:
            while monitor.poll(0):
                event = recv_monitor_message(monitor)
                endpoint = event["endpoint"].decode("utf-8", "replace")
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    self._counters["refused_unknown_key"] += 1  # the authenticator logged the key
                elif (event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                      or event["value"] == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH):
                    # A plaintext peer that sees the mismatch first hangs up: this side then only sees the
                    # handshake cut short. CURVE clients never do that, they wait for this side's verdict.
                    self._refused("refused_plaintext", endpoint, "a peer without CURVE security")
                else:
                    self._refused("refused_handshake", endpoint,
                                  "a CURVE handshake that failed (is the client's server key this side's public key?)")

    def _refused(self, counter: str, endpoint: str, what: str) -> None:
        self._counters[counter] += 1
        if (counter, endpoint) not in self._logged:
            self._logged.add((counter, endpoint))
            log.warning("%s: refused %s; ZeroMQ does not name the peer. Counted as %s, logged once per socket",
                        endpoint, what, counter)

    def close(self) -> None:
        """Stop the monitors and the authenticator; before the sockets close and the context ends."""
        for socket, monitor in self._monitors:
            if not socket.closed:
                socket.disable_monitor()
            monitor.close(linger=0)
        self._monitors.clear()
        self._authenticator.stop()
