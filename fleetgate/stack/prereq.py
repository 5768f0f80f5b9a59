"""Checks for what the local stack needs on the machine: Java 17+, Maven, free ports."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

from fleetgate.errors import UserError

_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def parse_java_major(version_output: str) -> int | None:
    """The major version from ``java -version`` output (``1.8`` counts as 8)."""
    match = _JAVA_VERSION.search(version_output)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def require_java(*, minimum: int = 17) -> str:
    """Path of a usable ``java``; a one-line reason what to install when there is none."""
    java = shutil.which("java")
    hint = (
        f"install a Java {minimum} runtime, e.g. `apt-get install openjdk-{minimum}-jre-headless`"
    )
    if java is None:
        raise UserError(f"Java is not installed (no `java` on PATH): {hint}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    major = parse_java_major(out.stderr + out.stdout)
    if major is None or major < minimum:
        raise UserError(f"Java {major or '?'} found at {java}, but {minimum}+ is needed: {hint}")
    return java


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise UserError(
            "Maven is not installed (no `mvn` on PATH) and the service jars are not cached yet: "
            "install it, e.g. `apt-get install maven`"
        )
    return mvn


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` or it cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def require_free_ports(ports: dict[str, tuple[str, int]]) -> None:
    """Refuse to start when a port is taken: one line naming the port and the setting."""
    for what, (host, port) in ports.items():
        if port_in_use(host, port):
            raise UserError(
                f"port {port} on {host} ({what}) is already in use: stop what listens there "
                f"or choose another port (setting {what})"
            )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (for tests and ephemeral stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def mosquitto_version() -> str | None:
    """The installed Mosquitto's version (``mosquitto -h`` prints it), or None."""
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if exe is None:
        return None
    proc = subprocess.run([exe, "-h"], capture_output=True, text=True, check=False, timeout=5)
    match = re.search(r"mosquitto version (\S+)", proc.stdout + proc.stderr)
    return match.group(1) if match else None
