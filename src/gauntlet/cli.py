"""``gauntlet``: bring a topology up, run its checks, write the report.

gauntlet run --topology default            # Molecule container hosts on this machine
gauntlet run --inventory inventories/staging   # your hosts, over SSH
gauntlet report report/                    # rebuild the HTML page from a report directory
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from gauntlet.report import build_report


def project_root() -> Path:
    """The collection checkout (where galaxy.yml, playbooks/ and molecule/ are)."""
    for candidate in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[2]):
        if (candidate / "galaxy.yml").exists() and (candidate / "molecule").is_dir():
            return candidate
    raise click.ClickException("run gauntlet from a gauntlet.cluster checkout (no galaxy.yml found)")


def step(n: int, total: int, text: str) -> None:
    click.secho(f"==> [{n}/{total}] {text}", bold=True)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Run one long step with its output streamed (Ansible/Molecule/pytest print their own progress), then
    say how long it took and how it ended."""
    click.echo("$ " + " ".join(cmd))
    t0 = time.monotonic()
    rc = subprocess.run(cmd, cwd=cwd, env=env, check=False).returncode
    click.secho(
        f"    {cmd[0] if cmd[0] != sys.executable else 'pytest'}: {'ok' if rc == 0 else f'exit {rc}'} "
        f"after {time.monotonic() - t0:.0f} s",
        fg="green" if rc == 0 else "red",
    )
    return rc


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
    """Provision, run every check that applies, write the report; exit non-zero when a check fails."""
    if bool(topology) == bool(inventory):
        raise click.UsageError("give exactly one of --topology NAME or --inventory PATH")
    root = project_root()
    report = Path(report_dir).resolve()
    name = topology or Path(inventory).name  # type: ignore[arg-type]
    run_dir = report / name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a report shows one run, never a mix of old and new histories
    run_dir.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        GAUNTLET_REPORT_DIR=str(run_dir),
        ANSIBLE_CONFIG=str(root / "ansible.cfg"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    started = time.monotonic()
    if topology:
        _check_topology(root, topology)
        # The demo skips Molecule's idempotence pass (a second converge that only proves the roles change
        # nothing: `make test` runs it for every topology); --idempotence puts it back.
        cmd = [str(root / "scripts" / "scenario.sh"), topology]
        cmd += [] if idempotence else ["--no-idempotence"]
        cmd += [] if prove else ["--no-prove"]
        cmd += ["--keep"] if keep else []
        phases = "create, converge" + (", idempotence" if idempotence else "") + ", verify"
        phases += ", prove" if prove else ""
        step(1, 3, f"{topology} on container hosts ({phases}{'' if keep else ', destroy'})")
        rc = _run(cmd, root, env)
    else:
        inv = str(Path(inventory).resolve())  # type: ignore[arg-type]
        env["GAUNTLET_INVENTORY"] = inv
        rc = 0
        if not skip_provision:
            step(1, 3, f"ansible-playbook -i {inventory} playbooks/site.yml")
            rc = _run(["ansible-playbook", "-i", inv, "playbooks/site.yml"], root, env)
        if rc == 0:
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
            )
    wall = time.monotonic() - started
    with (run_dir / "bench.jsonl").open("a") as fh:
        fh.write(
            f'{{"name": "main_job_wall_seconds", "value": {wall:.1f}, "unit": "s", "context": {{"run": "{name}"}}}}\n'
        )
    step(3, 3, "writing the report")
    page = build_report(report, title=f"gauntlet.cluster — {name}")
    click.echo(f"BENCH main_job_wall_seconds={wall:.0f} s ({name})")
    click.secho(f"report: {page}", bold=True)
    if rc != 0:
        raise click.ClickException(f"{name}: checks failed or provisioning failed (exit {rc}); see {page}")


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
@click.argument("report_dir", type=click.Path(exists=True, file_okay=False))
def report(report_dir: str) -> None:
    """Rebuild REPORT_DIR/index.html from the runs in it."""
    click.echo(build_report(report_dir))


if __name__ == "__main__":
    main()
