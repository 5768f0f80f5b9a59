"""``fleetgate vehicles import | show | link`` against the real Cassandra, run as the
``fleetgate`` program would (a process of its own, through the root command's error
handling), with ``processors.cli.register`` added to the root command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.ids import make_vin

pytestmark = pytest.mark.integration


FLEETGATE = """
import sys
from fleetgate.cli import main as root
from processors import cli
register = root._register
root._register = lambda: (register(), cli.register(root.app))
root.main(sys.argv[1:])
"""


def fleetgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", FLEETGATE, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(cassandra_contact: tuple[str, int], proc_keyspace: str) -> dict[str, str]:
    host, port = cassandra_contact
    return {
        "FLEETGATE_CASSANDRA__HOSTS": host,
        "FLEETGATE_CASSANDRA__PORT": str(port),
        "FLEETGATE_CASSANDRA__KEYSPACE": proc_keyspace,
    }


def test_import_csv_keeps_valid_rows_and_reports_bad_ones(
    env: dict[str, str], tmp_path: Path
) -> None:
    good1, good2 = make_vin(1, wmi="CSV"), make_vin(2, wmi="CSV")
    path = tmp_path / "fleet.csv"
    path.write_text(
        "vin,model,year,region,tags\n"
        f"{good1},Model A,2023,eu,fleet-a;beta\n"
        "WVWZZZ1JZXW00000I,Model B,2021,us,\n"  # an I: not a VIN
        f"{good2},Model C,not-a-year,us,\n"
        f'{good2},"Model, D",2022,us,x\n'
        f"{good1},dup,2020,eu,\n"
    )
    result = fleetgate(env, "vehicles", "import", str(path))
    assert result.returncode == 1, result.stderr
    assert "imported 2 vehicles" in result.stdout
    assert "line 3: VIN 'WVWZZZ1JZXW00000I' has illegal character 'I'" in result.stderr
    assert "line 4: year 'not-a-year' is not a number" in result.stderr
    assert f"line 6: duplicate VIN {good1} (first at line 2)" in result.stderr
    shown = fleetgate(env, "vehicles", "show", good2, "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["model"] == "Model, D"
    assert info["tags"] == ["x"]


def test_import_jsonl_with_ecus_then_link_and_show(env: dict[str, str], tmp_path: Path) -> None:
    vin = make_vin(3, wmi="JSN")
    path = tmp_path / "fleet.jsonl"
    rows = [
        {"vin": vin, "model": "M", "year": 2024, "region": "eu", "tags": ["a", "b"],
         "ecus": [{"name": "bcm", "hw": "H1", "sw": "1.0"}, {"name": "tcu", "sw": "7"}]},
        {"vin": make_vin(4, wmi="JSN"), "colour": "red"},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    result = fleetgate(env, "vehicles", "import", str(path))
    assert result.returncode == 1
    assert "imported 1 vehicles" in result.stdout
    assert "line 2: unknown field 'colour'" in result.stderr
    assert "line 3: invalid JSON" in result.stderr
    linked = fleetgate(env, "vehicles", "link", vin, "app-7")
    assert linked.returncode == 0, linked.stderr
    shown = fleetgate(env, "vehicles", "show", vin)
    assert shown.returncode == 0, shown.stderr
    assert "app-7" in shown.stdout
    assert "bcm" in shown.stdout
    assert "hw H1" in shown.stdout


def one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    """Exit code 2, one line on stderr saying ``text``, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fleetgate: error: ")
    assert text in lines[0]


def test_bad_input_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    one_line_error(fleetgate(env, "vehicles", "show", "NOT-A-VIN"), "VIN 'NOT-A-VIN'")
    unknown = fleetgate(env, "vehicles", "link", make_vin(99, wmi="UNK"), "app1")
    one_line_error(unknown, "unknown vehicle")
    one_line_error(fleetgate(env, "vehicles", "link", make_vin(1), "bad app!"), "app id")
    missing = tmp_path / "nope.csv"
    one_line_error(fleetgate(env, "vehicles", "import", str(missing)), "no such file")
    wrong = tmp_path / "fleet.txt"
    wrong.write_text("x")
    one_line_error(fleetgate(env, "vehicles", "import", str(wrong)), "unknown format")
    header = tmp_path / "h.csv"
    header.write_text("vin,model\n")
    bad_header = fleetgate(env, "vehicles", "import", str(header))
    one_line_error(bad_header, "expected 'vin,model,year,region,tags'")
    down = fleetgate({**env, "FLEETGATE_CASSANDRA__PORT": "1"}, "vehicles", "show", make_vin(1))
    assert down.returncode == 3
    assert "Cassandra" in down.stderr
    assert "Traceback" not in down.stderr
