"""A stand-in for podman, first on PATH in the tests of gauntlet clean and gauntlet run's signal handling.

It keeps its containers and networks in a JSON file, answers ``ps -a`` and ``network ls`` filtered by
``--filter label=KEY[=VALUE]`` as podman does (JSON with podman's keys), removes what ``rm`` and ``network rm`` name (a network still used by any container stays,
as podman's does without --force) and logs every call's arguments, one JSON list a line.

    python tests/unit/fake_podman.py ARGS...      (through the wrapper install() writes)
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

STATE_ENV = "FAKE_PODMAN_STATE"
LOG_ENV = "FAKE_PODMAN_LOG"
LABEL = "gauntlet_scenario"


def install(bin_dir: Path, state: dict[str, dict[str, dict[str, object]]]) -> tuple[Path, Path]:
    """Write ``bin_dir/podman`` and its state; the caller puts bin_dir first on PATH and sets the two
    variables to the returned paths (state, log)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_file, log_file = bin_dir / "podman-state.json", bin_dir / "podman-calls.jsonl"
    state_file.write_text(json.dumps({"containers": {}, "networks": {}, **state}))
    log_file.write_text("")
    wrapper = bin_dir / "podman"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return state_file, log_file


def calls(log_file: Path) -> list[list[str]]:
    """Every call's arguments, in order."""
    return [json.loads(line) for line in log_file.read_text().splitlines()]


def _matches(labels: dict[str, str], filters: list[str]) -> bool:
    for f in filters:
        key, _, value = f.removeprefix("label=").partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


def _filters(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--filter"]


def main(args: list[str]) -> int:
    with open(os.environ[LOG_ENV], "a") as log:
        log.write(json.dumps(args) + "\n")
    path = Path(os.environ[STATE_ENV])
    state = json.loads(path.read_text())
    containers, networks = state["containers"], state["networks"]
    if args[:2] == ["image", "exists"]:
        return 0
    if args[:2] == ["ps", "-a"] or args[:2] == ["network", "ls"]:
        listed = []
        for name, thing in (containers if args[0] == "ps" else networks).items():
            labels = thing.get("labels", {})
            if _matches(labels, _filters(args)):
                # podman's own keys: ps has Names (a list) and Labels, network ls name and labels
                listed.append(
                    {"Names": [name], "Labels": labels}
                    if args[0] == "ps"
                    else {"name": name, "labels": labels}
                )
        print(json.dumps(listed))
        return 0
    if args[0] == "rm":
        for name in [a for a in args[1:] if not a.startswith("-") and not a.isdigit()]:
            containers.pop(name, None)
    elif args[:2] == ["network", "rm"]:
        name = args[-1]
        users = [c for c, thing in containers.items() if thing.get("network") == name]
        if users and "--force" not in args and "-f" not in args:
            print(f"Error: network {name} is in use by {', '.join(users)}", file=sys.stderr)
            return 2
        networks.pop(name, None)
    path.write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
