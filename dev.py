#!/usr/bin/env python3
"""Set-up and everyday commands for a fresh machine with Python 3.11+ (nothing else needed).

    python3 dev.py demo    # venv + locked deps, then Parley with demo data on :8000
    python3 dev.py test    # the whole test suite: lint, types, unit, integration, e2e, crash

Both create `.venv` and install `requirements.lock` the first time (again only when the
lock or pyproject.toml changes). Extra arguments after `test` go to pytest; after `demo`
they go to `parley run`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".parley-installed"


def _say(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


def _run(cmd: list[str], **kw: object) -> int:
    """Run `cmd` to its end. A Ctrl-C is waited out, never turned into a kill: `parley`
    (or pytest) then stops its embedded PostgreSQL on the way out. (`subprocess.call`
    kills the child when interrupted, which left that server running with nobody to stop
    it.) A terminal's Ctrl-C reaches the child itself; an interrupt sent to this process
    alone is passed on."""
    _say(" ".join(str(c) for c in cmd))
    child = subprocess.Popen(cmd, cwd=ROOT, **kw)  # type: ignore[call-overload]
    while True:
        try:
            return int(child.wait())
        except KeyboardInterrupt:
            if child.poll() is None:
                if os.name != "nt" and not _terminal_interrupted_us():
                    child.send_signal(signal.SIGINT)
                _say("stopping (waiting for it to shut down cleanly)")


def _terminal_interrupted_us() -> bool:
    """True when we run in the terminal's foreground process group: its Ctrl-C went to
    the whole group, the child included (a second one could cut its clean-up short)."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):  # no terminal: the interrupt was sent to us alone
        return False


def ensure_env() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py must explain itself on old Pythons
        sys.exit(f"Parley needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    digest = hashlib.sha256(
        (ROOT / "requirements.lock").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    if not (BIN / "python").exists():
        _say(f"creating virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    py = str(BIN / "python")
    steps = [
        [py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [py, "-m", "pip", "install", "--quiet", "-r", "requirements.lock"],
        [py, "-m", "pip", "install", "--quiet", "--no-deps", "-e", "."],
    ]
    for step in steps:
        if _run(step) != 0:
            sys.exit("dependency installation failed (see above)")
    STAMP.write_text(digest + "\n")


def demo(args: list[str]) -> int:
    ensure_env()
    return _run([str(BIN / "parley"), "run", "--demo", *args])


def ensure_imap_server() -> None:
    """The email tests run a real IMAP server: Debian's dovecot. Install it when missing
    and we can (root with apt-get); otherwise say so -- those tests then skip, or fail
    under CI=true."""
    if shutil.which("dovecot") or Path("/usr/sbin/dovecot").exists():
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        _say("dovecot (IMAP server) is missing and cannot be installed here: IMAP tests skip")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", "dovecot-imapd"]
    if _run(install, env=env) != 0 and _run([apt, "update"], env=env) == 0:
        _run(install, env=env)
    if not Path("/usr/sbin/dovecot").exists():
        _say("dovecot installation failed: IMAP tests skip (and fail under CI=true)")


def test(args: list[str]) -> int:
    ensure_env()
    ensure_imap_server()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    checks = [
        [str(BIN / "ruff"), "check", "src", "tests", "dev.py"],
        [str(BIN / "mypy")],
    ]
    for check in checks:
        if _run(check, env=env) != 0:
            _say("static checks failed")
            return 1
    where = env.get("PARLEY_TEST_DATABASE_URL") or "an embedded PostgreSQL (temporary)"
    _say(f"tests run against {where}")
    return _run([str(BIN / "python"), "-m", "pytest", *args], env=env)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test", "setup"):
        print(__doc__)
        return 2
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "setup":
        ensure_env()
        return 0
    return demo(rest) if command == "demo" else test(rest)


if __name__ == "__main__":
    sys.exit(main())
