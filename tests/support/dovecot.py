"""A real IMAP server for the tests: Debian's dovecot, run from a temporary config.

`dev.py test` installs it (``apt-get install dovecot-imapd``) when it is missing and it
can; tests that need it call `require_dovecot()`, which skips loudly without it -- and
fails under ``CI=true``, where a skipped IMAP test would hide a broken set-up.

The server listens on 127.0.0.1 -- plaintext, or implicit TLS with a self-signed
certificate made by `openssl` -- or, for STARTTLS, on 127.0.0.2 (dovecot counts a client
whose address equals its own as secure and would allow plaintext logins from it):
plaintext with STARTTLS offered (`starttls="yes"`) or required before any login
(`starttls="required"`: ``ssl = required``, ``disable_plaintext_auth = yes``). It has one
user from a passwd-file and a Maildir in the temporary directory. Run as root, dovecot still
refuses to run its login and mail processes as root, so those take its packaged
`dovenull` and `dovecot` users; otherwise everything runs as the current user.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

USER, PASSWORD = "collections", "imap-test-secret"
StartTls = Literal["yes", "required"]
_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")


def dovecot_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return next((p for p in _CANDIDATES if os.access(p, os.X_OK)), None)


def require_dovecot() -> str:
    binary = dovecot_binary()
    if binary is None:
        reason = (
            "IMAP tests need dovecot (apt-get install dovecot-imapd); `python3 dev.py test` "
            "installs it when it can"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true and " + reason)
        pytest.skip("SKIPPED LOUDLY: " + reason)
    return binary


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Dovecot:
    host: str
    port: int
    user: str
    password: str
    root: Path
    tls: bool = False
    starttls: StartTls | None = None

    def client(self) -> imaplib.IMAP4:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # our own self-signed test certificate
        if self.tls:
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                self.host, self.port, ssl_context=context, timeout=10
            )
        else:
            imap = imaplib.IMAP4(self.host, self.port, timeout=10)
            if self.starttls:
                imap.starttls(context)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver a message into the mailbox as another client (an MTA, a person) would."""
        imap = self.client()
        try:
            status, data = imap.append(folder, None, None, raw)
            assert status == "OK", data
        finally:
            imap.logout()


def _self_signed(root: Path, mode: str = "required") -> str:
    """Dovecot settings for TLS (`ssl = <mode>`) with a fresh self-signed certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("SKIPPED LOUDLY: the IMAP TLS test needs the openssl command")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
            str(root / "key.pem"),
            "-out",
            str(root / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return f"ssl = {mode}\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem\n"


def _config(root: Path, host: str, port: int, tls: bool, starttls: StartTls | None) -> str:
    if os.geteuid() == 0:
        internal, login = "dovecot", "dovenull"
        mail = pwd.getpwnam("dovecot")
    else:
        internal = login = pwd.getpwuid(os.getuid()).pw_name
        mail = pwd.getpwuid(os.getuid())
    home = root / "home"
    home.mkdir()
    os.chown(home, mail.pw_uid, mail.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    if starttls:
        ssl_settings = _self_signed(root, starttls)
    else:
        ssl_settings = _self_signed(root) if tls else "ssl = no\n"
    plain_auth = "yes" if starttls == "required" else "no"
    plain_port, tls_port = (0, port) if tls else (port, 0)
    return f"""
{ssl_settings}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
disable_plaintext_auth = {plain_auth}
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {mail.pw_uid}
mail_location = maildir:{home}/%u/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={home}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


@contextlib.contextmanager
def running_dovecot(*, tls: bool = False, starttls: StartTls | None = None) -> Iterator[Dovecot]:
    binary = require_dovecot()
    # Not pytest's tmp_path: its parents are private to us, and dovecot's unprivileged
    # processes must reach their sockets.
    root = Path(tempfile.mkdtemp(prefix="parley-dovecot-"))
    root.chmod(0o755)
    host = "127.0.0.2" if starttls else "127.0.0.1"
    port = _free_port(host)
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, host, port, tls, starttls))
    process = subprocess.Popen(
        [binary, "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                err = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"dovecot did not start: {err}\n{log}")
            time.sleep(0.05)
        yield Dovecot(host, port, USER, PASSWORD, root, tls, starttls)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
