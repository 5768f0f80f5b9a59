"""Resolve Java services (Kafka, Cassandra) from Maven Central into a verified local cache.

A cache entry is ``<cache>/<name>/lib/*.jar`` plus ``manifest.json`` (every jar's size and
SHA-256). An entry without a manifest is incomplete and resolved again; an entry whose jars
no longer match their manifest is corrupt and refused with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from fleetgate.errors import UserError
from fleetgate.stack.prereq import require_maven

MANIFEST = "manifest.json"


def pom_xml(*, name: str, coordinates: Sequence[str]) -> str:
    """A throw-away POM whose dependencies are ``group:artifact:version`` coordinates."""
    deps = []
    for coordinate in coordinates:
        parts = coordinate.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"Maven coordinate {coordinate!r} is not group:artifact:version")
        group, artifact, version = (escape(p) for p in parts)
        deps.append(
            f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        f"<groupId>fleetgate.cache</groupId><artifactId>{escape(name)}</artifactId>"
        "<version>1</version><packaging>pom</packaging>"
        f"<dependencies>{''.join(deps)}</dependencies></project>"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(entry: Path, *, coordinates: Sequence[str]) -> None:
    jars = sorted((entry / "lib").glob("*.jar"))
    manifest = {
        "coordinates": list(coordinates),
        "jars": {jar.name: {"size": jar.stat().st_size, "sha256": _sha256(jar)} for jar in jars},
    }
    (entry / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def verify(entry: Path, *, coordinates: Sequence[str], deep: bool = False) -> str | None:
    """None when the entry is whole; else why not. ``deep`` re-hashes every jar."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        jars: dict[str, dict[str, object]] = manifest["jars"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"manifest unreadable ({exc})"
    if manifest.get("coordinates") != list(coordinates):
        return "resolved for other versions"
    if not jars:
        return "no jars"
    lib = entry / "lib"
    for name, meta in jars.items():
        jar = lib / name
        if not jar.is_file():
            return f"{name} is missing"
        if jar.stat().st_size != meta.get("size"):
            return f"{name} has the wrong size"
        if deep and _sha256(jar) != meta.get("sha256"):
            return f"{name} does not match its checksum"
    if deep:
        for name in jars:
            if not zipfile.is_zipfile(lib / name):
                return f"{name} is not a jar"
    return None


def resolve(*, name: str, coordinates: Sequence[str], cache_dir: Path) -> Path:
    """The ``lib`` directory holding every runtime jar of ``coordinates``, resolving once."""
    entry = cache_dir / name
    if (entry / MANIFEST).exists():
        problem = verify(entry, coordinates=coordinates)
        if problem is None:
            return entry / "lib"
        if problem != "resolved for other versions":
            raise UserError(
                f"the cache of {name} at {entry} is corrupt: {problem}; "
                f"delete that directory and run again to fetch it anew"
            )
    mvn = require_maven()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=cache_dir) as tmp:
        work = Path(tmp)
        (work / "pom.xml").write_text(pom_xml(name=name, coordinates=coordinates))
        proc = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
             "-DoutputDirectory=lib"],
            cwd=work, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            last = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
            reason = last[0] if last else f"mvn exited {proc.returncode}"
            raise UserError(f"could not resolve {name} from Maven Central: {reason.strip()}")
        staged = work / "entry"
        staged.mkdir()
        (work / "lib").rename(staged / "lib")
        write_manifest(staged, coordinates=coordinates)
        if entry.exists():
            shutil.rmtree(entry)
        staged.rename(entry)
    return entry / "lib"
