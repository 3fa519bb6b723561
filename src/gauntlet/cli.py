"""``gauntlet``: bring a topology up, run its checks, write the report.

gauntlet run --topology default            # Molecule container hosts on this machine
gauntlet run --inventory inventories/staging   # your hosts, over SSH
gauntlet report report/                    # rebuild the HTML page from a report directory
gauntlet clean [--scenario NAME]           # remove the containers and networks an interrupted run left
gauntlet heal --inventory PATH             # remove every fault of ours from every host of an inventory
gauntlet --version

Exit status of ``gauntlet run`` (README.md, "The harness"):

=== ==========================================================================================
0   every check passed
1   checks failed (pytest's failures, a failed planted-defect proof)
2   bad usage: click's own errors, an option that does not apply to the chosen mode, a run
    directory it will not remove
3   provisioning failed (the playbook; Molecule's create, converge, idempotence or destroy)
4   the inventory could not be read (as the pytest plugin's ``--inventory`` ends a run)
130 interrupted by SIGINT (143 SIGTERM, 129 SIGHUP): the signal went to the running step and
    gauntlet waited for its clean-up (scenario.sh destroys the hosts unless --keep), else
    removed them itself (gauntlet.supervise, ``gauntlet clean --scenario NAME``)
=== ==========================================================================================
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

# The distribution pyproject.toml names ([project] name): what --version reports.
DISTRIBUTION = "gauntlet-cluster"

EXIT_OK = 0
EXIT_CHECKS_FAILED = 1
EXIT_USAGE = 2  # click.UsageError's own
EXIT_PROVISION_FAILED = 3
EXIT_INVENTORY = 4  # gauntlet.pytest_plugin: an unreadable --inventory

# Written into every run directory gauntlet makes: only a directory holding it is ever removed.
RUN_MARKER = ".gauntlet-run"
# scripts/scenario.sh writes the name of the phase that failed here (in the run directory).
FAILED_PHASE = "failed-phase"
# A failure in these phases is the checks' (exit 1); any other phase's is provisioning's (exit 3).
CHECK_PHASES = {"secrets-in-log", "verify", "prove"}

# Options of `run` that only one mode uses (parameter name -> its flag).
TOPOLOGY_ONLY = {"keep": "--keep", "idempotence": "--idempotence", "prove": "--prove"}
INVENTORY_ONLY = {"skip_provision": "--skip-provision"}


def package_version() -> str:
    """The installed version of the harness; "unknown" when it is run from a checkout not installed."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class OneLineUsageError(click.UsageError):
    """A usage error (exit 2) shown as its one line, without the usage text."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", file=file or sys.stderr)


class RunFailed(click.ClickException):
    """A run that ended with a failure: its class's exit status says which (see the module docstring)."""


class ChecksFailed(RunFailed):
    exit_code = EXIT_CHECKS_FAILED


class ProvisionFailed(RunFailed):
    exit_code = EXIT_PROVISION_FAILED


class InventoryUnreadable(RunFailed):
    exit_code = EXIT_INVENTORY


# A failed run's exit status -> how it ends and what its last line says.
FAILURES: dict[int, tuple[type[RunFailed], str]] = {
    EXIT_CHECKS_FAILED: (ChecksFailed, "checks failed"),
    EXIT_PROVISION_FAILED: (ProvisionFailed, "provisioning failed"),
    EXIT_INVENTORY: (InventoryUnreadable, "the inventory could not be read"),
}


def project_root() -> Path:
    """The collection checkout (where galaxy.yml, playbooks/ and molecule/ are)."""
    for candidate in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]):
        if (candidate / "galaxy.yml").exists() and (candidate / "molecule").is_dir():
            return candidate
    raise click.ClickException("run gauntlet from a gauntlet.cluster checkout (no galaxy.yml found)")


def check_run_options(topology: str | None, inventory: str | None, options: dict[str, bool]) -> str:
    """The mode ("topology" or "inventory") of a `run`; a usage error for two modes, none, or an option
    given that the chosen mode does not use (never silently ignored)."""
    if topology and inventory:
        raise OneLineUsageError("--inventory does not apply with --topology: give one of the two modes")
    if not topology and not inventory:
        raise OneLineUsageError("give one of --topology NAME or --inventory PATH")
    mode, foreign = ("topology", INVENTORY_ONLY) if topology else ("inventory", TOPOLOGY_ONLY)
    for param, flag in foreign.items():
        if options.get(param):
            raise OneLineUsageError(f"{flag} does not apply to --{mode} runs")
    return mode


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
RESERVED_NAMES = {"", ".", "..", "histories"}  # histories/: the report's own directory (report.data)


def run_dir_name(topology: str | None, inventory: str | None) -> str:
    """The run directory's name inside the report directory: the topology, else the resolved inventory
    path's last part; only letters, digits, '.', '_' and '-', never empty, hidden, '.' or '..'."""
    raw = topology if topology else Path(inventory or "").resolve().name
    name = _UNSAFE.sub("_", raw).lstrip(".")
    if name in RESERVED_NAMES:
        name = f"run-{name.strip('.') or 'inventory'}"
    return name


def prepare_run_dir(report: Path, name: str) -> Path:
    """Make ``report/name`` anew (a report shows one run, never a mix of old and new histories) with its
    marker. An existing one is removed only when it is a real directory directly inside ``report`` that
    gauntlet made (holds :data:`RUN_MARKER`); anything else is a usage error and nothing is removed."""
    if name in RESERVED_NAMES or os.sep in name or (os.altsep and os.altsep in name):
        raise OneLineUsageError(f"'{name}' cannot name a run directory")
    report = report.resolve()
    run_dir = report / name
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise OneLineUsageError(f"refusing to remove {run_dir}: not a directory of the report {report}")
    if run_dir.exists():
        if run_dir.resolve().parent != report:
            raise OneLineUsageError(f"refusing to remove {run_dir}: it is outside the report {report}")
        if not (run_dir / RUN_MARKER).is_file():
            raise OneLineUsageError(
                f"refusing to remove {run_dir}: gauntlet did not make it (no {RUN_MARKER}); "
                "move it away or give another --report"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / RUN_MARKER).write_text("made by gauntlet run: removed by the next run of the same name\n")
    return run_dir


def topology_exit_code(rc: int, run_dir: Path) -> int:
    """``gauntlet run --topology``'s exit status from scripts/scenario.sh's and the phase it failed in."""
    if rc == 0:
        return EXIT_OK
    marker = run_dir / FAILED_PHASE
    phase = marker.read_text().strip() if marker.is_file() else ""
    return EXIT_CHECKS_FAILED if phase in CHECK_PHASES else EXIT_PROVISION_FAILED


def pytest_exit_code(rc: int) -> int:
    """``gauntlet run --inventory``'s exit status from its pytest's: 4 stays 4 (the plugin could not read the
    inventory: the command line is gauntlet's own, so no other usage error), any other failure is 1."""
    if rc == 0:
        return EXIT_OK
    return EXIT_INVENTORY if rc == 4 else EXIT_CHECKS_FAILED


def read_inventory(inventory: str) -> None:
    """Exit 4 with one line when the inventory cannot be read, before anything is provisioned."""
    from gauntlet.cluster import Cluster
    from gauntlet.errors import GauntletError

    try:
        Cluster.from_inventory(inventory)
    except GauntletError as exc:
        raise InventoryUnreadable(f"cannot read the inventory {inventory}: {exc}") from None


def step(n: int, total: int, text: str) -> None:
    click.secho(f"==> [{n}/{total}] {text}", bold=True)


def _run(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    group: bool = True,
    forward_as: int | None = None,
    last_resort: Callable[[], None] | None = None,
) -> int:
    """Run one long step with its output streamed (Ansible/Molecule/pytest print their own progress), then
    say how long it took and how it ended. A signal to gauntlet goes to the step (its whole process group
    when ``group``; as ``forward_as``, if given), whose clean-up gauntlet waits for, else runs
    ``last_resort``; then the run ends (exit 128 + the signal). See gauntlet.supervise."""
    from gauntlet.supervise import run_supervised

    click.echo("$ " + " ".join(cmd))
    t0 = time.monotonic()
    outcome = run_supervised(
        cmd, cwd, env, group=group, forward_as=forward_as, last_resort=last_resort, say=click.echo
    )
    rc = outcome.returncode
    click.secho(
        f"    {cmd[0] if cmd[0] != sys.executable else 'pytest'}: {'ok' if rc == 0 else f'exit {rc}'} "
        f"after {time.monotonic() - t0:.0f} s",
        fg="green" if rc == 0 else "red",
    )
    if outcome.signum:
        # The run ends here, 128 + the signal (130 SIGINT, 143 SIGTERM): no report of a half run.
        click.echo(f"Error: interrupted by {signal.Signals(outcome.signum).name}", err=True)
        raise click.exceptions.Exit(outcome.exit_code)
    return rc


def _last_resort_clean(root: Path, topology: str) -> Callable[[], None]:
    """``gauntlet clean --scenario TOPOLOGY``, for a scenario.sh that did not finish its own clean-up."""

    def run() -> None:
        from gauntlet import cleanup

        click.echo(f"gauntlet: removing what is left of {topology} (gauntlet clean --scenario {topology})")
        try:
            cleaned = cleanup.clean(topology, root)
        except cleanup.PodmanFailed as exc:
            click.echo(f"gauntlet: {exc}")
            return
        for line in cleanup.report_lines(cleaned, topology):
            click.echo(f"gauntlet: {line}")

    return run


def _check_topology(root: Path, topology: str) -> None:
    scenarios = sorted(p.name for p in (root / "molecule").iterdir() if (p / "molecule.yml").exists())
    if topology not in scenarios:
        raise click.ClickException(f"no topology '{topology}': choose one of {', '.join(scenarios)}")
    if not shutil.which("podman"):
        raise click.ClickException("podman is not installed: run 'make setup' first")
    if subprocess.run(
        ["podman", "image", "exists", "localhost/gauntlet-base:latest"], check=False
    ).returncode:
        raise click.ClickException(
            "the base image localhost/gauntlet-base:latest is missing: run 'make setup' first"
        )


@click.group()
@click.version_option(package_version(), "--version", prog_name="gauntlet", message="%(prog)s %(version)s")
def main() -> None:
    """Bring up multi-host topologies and prove them with fault-injecting checks."""


@main.command()
@click.option("--topology", help="A Molecule scenario under molecule/ (container hosts on this machine).")
@click.option("--inventory", type=click.Path(exists=True), help="An Ansible inventory of real hosts (SSH).")
@click.option("--report", "report_dir", default="report", show_default=True, help="Report directory.")
@click.option("--keep", is_flag=True, help="Topologies: leave the hosts running afterwards (no destroy).")
@click.option(
    "--idempotence", is_flag=True, help="Topologies: also run the idempotence pass (make test does)."
)
@click.option("--prove", is_flag=True, help="Topologies: also run the planted-defect proof (make test does).")
@click.option(
    "--skip-provision", is_flag=True, help="Inventories: hosts are already provisioned; only check."
)
def run(
    topology: str | None,
    inventory: str | None,
    report_dir: str,
    keep: bool,
    idempotence: bool,
    prove: bool,
    skip_provision: bool,
) -> None:
    """Provision, run every check that applies, write the report. Exit 0 when every check passed, 1 when
    checks failed, 2 on bad usage, 3 when provisioning failed, 4 when the inventory could not be read."""
    check_run_options(
        topology,
        inventory,
        {"keep": keep, "idempotence": idempotence, "prove": prove, "skip_provision": skip_provision},
    )
    from gauntlet.report import build_report  # here: matplotlib only for the commands that draw

    root = project_root()
    if topology:
        _check_topology(root, topology)  # before anything is removed: an unknown name names no directory
    else:
        read_inventory(str(Path(inventory).resolve()))  # type: ignore[arg-type]
    report = Path(report_dir).resolve()
    name = run_dir_name(topology, inventory)
    run_dir = prepare_run_dir(report, name)
    env = dict(os.environ)
    env.update(
        GAUNTLET_REPORT_DIR=str(run_dir),
        ANSIBLE_CONFIG=str(root / "ansible.cfg"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    started = time.monotonic()
    if topology:
        # The demo skips Molecule's idempotence pass (a second converge that only proves the roles change
        # nothing: `make test` runs it for every topology); --idempotence puts it back.
        cmd = [str(root / "scripts" / "scenario.sh"), topology]
        cmd += [] if idempotence else ["--no-idempotence"]
        cmd += [] if prove else ["--no-prove"]
        cmd += ["--keep"] if keep else []
        phases = "create, converge, secrets-in-log" + (", idempotence" if idempotence else "") + ", verify"
        phases += ", prove" if prove else ""
        step(1, 3, f"{topology} on container hosts ({phases}{'' if keep else ', destroy'})")
        # --keep: the hosts stay, interrupted or not (scenario.sh's own trap keeps them too).
        last_resort = None if keep else _last_resort_clean(root, topology)
        code = topology_exit_code(_run(cmd, root, env, last_resort=last_resort), run_dir)
    else:
        inv = str(Path(inventory).resolve())  # type: ignore[arg-type]
        env["GAUNTLET_INVENTORY"] = inv
        code = EXIT_OK
        if not skip_provision:
            step(1, 3, f"ansible-playbook -i {inventory} playbooks/site.yml")
            # The playbook and pytest keep the terminal (ssh may ask for a passphrase); a signal reaches them
            # as SIGINT: Ansible stops, pytest stops as on a Ctrl-C, running its teardowns (the nemesis
            # heals the faults still in force on your hosts).
            playbook = ["ansible-playbook", "-i", inv, "playbooks/site.yml"]
            if _run(playbook, root, env, group=False, forward_as=signal.SIGINT):
                code = EXIT_PROVISION_FAILED
        if code == EXIT_OK:
            step(2, 3, f"pytest tests/integration --inventory {inventory}")
            rc = _run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "tests/integration",
                    "-p",
                    "no:cacheprovider",
                    f"--inventory={inv}",
                    f"--report-dir={run_dir}",
                ],
                root,
                env,
                group=False,
                forward_as=signal.SIGINT,
            )
            code = pytest_exit_code(rc)
    wall = time.monotonic() - started
    with (run_dir / "bench.jsonl").open("a") as fh:
        fh.write(
            f'{{"name": "main_job_wall_seconds", "value": {wall:.1f}, "unit": "s", "context": {{"run": "{name}"}}}}\n'
        )
    step(3, 3, "writing the report")
    page = build_report(report, title=f"gauntlet.cluster — {name}")
    click.echo(f"BENCH main_job_wall_seconds={wall:.0f} s ({name})")
    click.secho(f"report: {page}", bold=True)
    if code != EXIT_OK:
        failure, what = FAILURES[code]
        raise failure(f"{name}: {what} (exit {code}); see {page}")


@main.command()
@click.option("--topology", help="A topology (molecule/<name>/topology.yml): the defects its 'proof' lists.")
@click.option(
    "--inventory", type=click.Path(exists=True), help="The cluster's inventory (default: Molecule's)."
)
@click.option("--defect", "defect_names", multiple=True, help="Only these defects (repeatable).")
@click.option(
    "--report", "report_dir", help="Report directory (default: $GAUNTLET_REPORT_DIR, else report/<name>)."
)
def prove(
    topology: str | None, inventory: str | None, defect_names: tuple[str, ...], report_dir: str | None
) -> None:
    """Planted-defect proof of a running topology: for each defect, plant it, require its check to FAIL for
    the expected reason, undo it, require the check to pass again. Exit non-zero unless every one held."""
    from gauntlet import prove as proof
    from gauntlet import topologies
    from gauntlet.bench import Bench
    from gauntlet.cluster import Cluster
    from gauntlet.errors import GauntletError
    from gauntlet.nemesis import defects

    source = inventory or os.environ.get("GAUNTLET_INVENTORY")
    if not source and os.environ.get("MOLECULE_INVENTORY_FILE"):
        source = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    if not source:
        raise click.UsageError(
            "no inventory: give --inventory PATH, or run it through Molecule (make prove-NAME)"
        )
    try:
        cluster = Cluster.from_inventory(source)
        names = list(defect_names) or (
            list(topologies.get(topology).proof) if topology else defects.names(cluster)
        )
        chosen = [defects.get(n) for n in names]
    except (GauntletError, topologies.TopologyError, defects.UnknownDefect) as exc:
        raise click.ClickException(str(exc)) from None
    missing = [d.name for d in chosen if not d.applies_to(cluster)]
    if missing:
        raise click.ClickException(f"{source} lacks the groups of defect(s) {', '.join(missing)}")
    if not chosen:
        raise click.ClickException("no defect to plant: a proof that plants nothing proves nothing")
    name = topology or Path(source).name
    out = Path(report_dir or os.environ.get("GAUNTLET_REPORT_DIR") or Path("report") / name).resolve()
    stream = os.environ.get("GAUNTLET_VERIFY_LOG")  # scripts/scenario.sh streams this file as it grows

    def log(line: str) -> None:
        click.echo(line)
        if stream:
            with open(stream, "a") as fh:
                fh.write(f"prove: {line}\n")

    rows = proof.prove(cluster, chosen, proof.pytest_runner(source, out), log=log)
    click.echo(f"proof: {proof.write_proof(out, rows)}")
    bench = Bench(out / "bench.jsonl")
    bench.record("fidelity_planted", len(rows), "defects", topology=name)
    bench.record("fidelity_caught", sum(1 for r in rows if r.caught), "defects", topology=name)
    for line in proof.bench_lines(rows):
        log(line)
    failed = [r.defect for r in rows if not r.held]
    if failed:
        raise click.ClickException(f"proof failed for {', '.join(failed)}: caught must equal planted")


@main.command()
@click.option("--scenario", help="Only this scenario's (the value of its gauntlet_scenario label).")
def clean(scenario: str | None) -> None:
    """Remove every container and network of ours that an interrupted run left (those labelled
    gauntlet_scenario; nothing unlabelled is touched), containers first, and reset Molecule's state of the
    scenarios cleaned. Exit 0 when nothing of ours is left, 1 when something could not be removed."""
    from gauntlet import cleanup

    try:
        root: Path | None = project_root()
    except click.ClickException:
        root = None  # outside a checkout: no Molecule state to reset
    try:
        cleaned = cleanup.clean(scenario, root)
    except cleanup.PodmanFailed as exc:
        raise click.ClickException(f"{exc}; nothing was removed") from None
    for line in cleanup.report_lines(cleaned, scenario):
        click.echo(line)
    if cleaned.left:
        raise click.ClickException(f"{len(cleaned.left)} thing(s) of ours are left (see above)")


@main.command()
@click.option(
    "--inventory",
    type=click.Path(exists=True),
    envvar="GAUNTLET_INVENTORY",
    help="The cluster's inventory (default: $GAUNTLET_INVENTORY).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for one host before naming it and going on to the next.",
)
def heal(inventory: str | None, timeout: float) -> None:
    """Remove every fault of ours from every host of an inventory, whoever started it (a run killed
    mid-fault, a controller that lost its hosts): dead-man timers stopped, every undo the hosts keep run
    (units we stopped started, processes we paused continued, clocks and disks given back), our iptables
    chain and qdiscs removed, stress units stopped, CPU and memory limits given back. Exit 0
    when every host is healed, 1 naming each host that could not be, 2 on bad usage, 4 when the inventory
    cannot be read."""
    from gauntlet.cluster import Cluster
    from gauntlet.errors import GauntletError
    from gauntlet.nemesis import Nemesis

    if not inventory:
        raise OneLineUsageError("give --inventory PATH (or set GAUNTLET_INVENTORY)")
    try:
        cluster = Cluster.from_inventory(inventory)
    except GauntletError as exc:
        raise InventoryUnreadable(f"cannot read the inventory {inventory}: {exc}") from None
    unhealed = Nemesis(cluster, fault_bound_s=0).heal_hosts(
        timeout=timeout, say=lambda host, outcome: click.echo(f"{host}: {outcome}")
    )
    if unhealed:
        raise ChecksFailed(f"{len(unhealed)} host(s) not healed: {', '.join(unhealed)}")


@main.command()
@click.argument("report_dir", type=click.Path(exists=True, file_okay=False))
def report(report_dir: str) -> None:
    """Rebuild REPORT_DIR/index.html from the runs in it."""
    from gauntlet.report import build_report

    click.echo(build_report(report_dir))


if __name__ == "__main__":
    main()
