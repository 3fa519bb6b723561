"""`gauntlet clean` after a killed run leaves no container or network of ours, with the real podman.

The "run" is a subprocess that makes what a scenario makes, narrowly: ONE network and ONE container (the base
image running `sleep 300`, not systemd: fast), both named gauntlet-cleantest-<random> and labelled
gauntlet_scenario=cleantest-<random>. It is SIGKILLed (no trap, no destroy), then
`gauntlet clean --scenario cleantest-<random>` must leave nothing with that label. Nothing else on the
machine is touched: every podman call here names this test's own label or names; the finally removes them
whatever happened.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

IMAGE = "localhost/gauntlet-base:latest"  # molecule/_shared/create.yml's (scripts/setup-host.sh builds it)
SRC = Path(__file__).resolve().parents[2] / "src"


def podman(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False, timeout=timeout)


@pytest.fixture
def base_image() -> str:
    if not shutil.which("podman"):
        pytest.skip("podman is not installed: run 'make setup'")
    if podman("image", "exists", IMAGE).returncode:
        pytest.skip(f"the base image {IMAGE} is missing: run 'make setup' to build it")
    return IMAGE


def test_gauntlet_clean_after_a_killed_run_leaves_no_container_or_network_of_ours(base_image, tmp_path):
    token = secrets.token_hex(4)
    name, scenario = f"gauntlet-cleantest-{token}", f"cleantest-{token}"
    label = f"gauntlet_scenario={scenario}"
    run_script = (
        "set -e\n"
        f"podman network create --label {label} {name} >/dev/null\n"
        f"podman run -d --name {name} --network {name} --label {label} {base_image} sleep 300 >/dev/null\n"
        "echo ready\n"
        "exec sleep 300\n"  # the run goes on, as a scenario's would, until it is killed
    )
    started = time.monotonic()
    run = subprocess.Popen(["bash", "-c", run_script], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None
        assert run.stdout.readline().strip() == "ready", "the run did not make its network and container"
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
        assert podman("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}").stdout.split() == [
            name
        ]

        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        env["ANSIBLE_HOME"] = str(tmp_path / "ansible-home")  # its Molecule state reset: never ~/.ansible
        clean = subprocess.run(
            [sys.executable, "-m", "gauntlet.cli", "clean", "--scenario", scenario],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=env,
        )
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert f"removed container {name} ({scenario})" in clean.stdout
        assert f"removed network {name} ({scenario})" in clean.stdout

        containers = podman("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
        networks = podman("network", "ls", "--filter", f"label={label}", "--format", "{{.Name}}")
        assert containers.returncode == 0 and containers.stdout.strip() == ""
        assert networks.returncode == 0 and networks.stdout.strip() == ""
        assert time.monotonic() - started < 15, "the clean-up of one container and network took over 15 s"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        podman("rm", "--force", "--time", "0", name)
        podman("network", "rm", name)
