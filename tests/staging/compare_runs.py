"""Did a staging run pass the same checks as the container run of its topology?

    python tests/staging/compare_runs.py TOPOLOGY INVENTORY JUNIT_XML

The container run's checks are the selection of ``molecule/<topology>/topology.yml`` (the one the shared
verify playbook runs), collected against INVENTORY.
Every one of them must have run to a verdict in JUNIT_XML (the staging run's report): passed, or xfailed (a
check that ran and reported a documented finding with its evidence, e.g. NATS replica divergence, which
shows on some runs and not on others). A check that failed, errored, was skipped or did not run makes the
comparison fail, naming it. Exit 0 when all ran to a verdict.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

from gauntlet.topologies import ROOT, get

RAN_TO_A_VERDICT = ("passed", "xfailed")


def container_selection(topology: str) -> list[str]:
    """pytest arguments of the container run's checks: the topology description's selection."""
    return get(topology).checks.pytest_args_list()


def collected_ids(args: list[str], inventory: str) -> list[str]:
    """Node ids pytest selects with ``args`` (collection only, nothing runs)."""
    # Our own inventory, and quiet output (one node id a line) whatever verbosity the verify step asked for.
    args = [a for a in args if not a.startswith("--inventory") and a not in ("-v", "-vv", "--verbose")]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--collect-only", "-q", f"--inventory={inventory}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    ids = [line.strip() for line in out.stdout.splitlines() if "::" in line]
    if not ids:
        raise SystemExit(f"the container run's selection collected nothing:\n{out.stdout}\n{out.stderr}")
    return ids


def junit_outcomes(path: str) -> dict[str, str]:
    """(classname::name) → passed | xfailed | failed | error | skipped, from a JUnit XML file."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                # JUnit has no xfail: pytest writes it as <skipped type="pytest.xfail">.
                if kind == "skipped" and found.get("type") == "pytest.xfail":
                    outcome = "xfailed"
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return outcomes


def junit_key(node_id: str) -> str:
    """A pytest node id in JUnit's terms: path/to/test_x.py::Class::test[p] → path.to.test_x.Class::test[p]."""
    parts = node_id.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".")
    return ".".join([module, *parts[1:-1]]) + "::" + parts[-1]


def main() -> int:
    topology, inventory, junit = sys.argv[1:4]
    wanted = collected_ids(container_selection(topology), inventory)
    outcomes = junit_outcomes(junit)
    missing = {n: outcomes.get(junit_key(n), "did not run") for n in wanted}
    bad = {n: o for n, o in missing.items() if o not in RAN_TO_A_VERDICT}
    print(f"==> the container run of '{topology}' selects {len(wanted)} checks; over SSH:")
    for n in wanted:
        print(f"    {missing[n]:>11}  {n}")
    if bad:
        print(
            f"staging-proof: {len(bad)} of the container run's checks did not pass over SSH", file=sys.stderr
        )
        return 1
    print(f"==> all {len(wanted)} checks of the container run ran to a verdict over SSH (passed or xfailed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
