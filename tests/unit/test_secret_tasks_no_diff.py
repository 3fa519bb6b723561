"""Every template/copy/lineinfile/blockinfile task in roles/ that writes a password or a private key hides its
diff (``diff: false`` or ``no_log: true``): ``--diff`` would otherwise print the secret in the converge log.

A task writes a secret when its content, line or src expression, or the template it renders
(roles/<role>/templates; a template the inventory chooses, or a host's file copied, counts), names a password-like variable, or when it
copies a ``.key`` file. The scan of a converge log
(gauntlet.secrets_scan) is the run-time side of the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from role_support import ROOT

WRITERS = {
    f"{prefix}{module}"
    for prefix in ("", "ansible.builtin.")
    for module in ("template", "copy", "lineinfile", "blockinfile")
}
#: A Jinja expression or statement naming a secret (password, Redis masterauth/requirepass, a private key).
SECRET_IN_JINJA = re.compile(
    r"(\{\{|\{%)[^}]*(password|passwd|_pass\b|auth_pass|masterauth|requirepass|secret|private_?key|_key_content)",
    re.IGNORECASE,
)
KEY_FILE = re.compile(r"\.key\b|\.pem\.key\b|_key_src\b")


def tasks_in(items: list[Any] | None) -> Iterator[dict[str, Any]]:
    """Every task of a task list, the ones inside block/rescue/always included."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        yield item
        for section in ("block", "rescue", "always"):
            yield from tasks_in(item.get(section))


def writes_a_secret(role: Path, task: dict[str, Any]) -> bool:
    """Whether a file-writing task's content, line, src or template (or its loop's items) holds a secret."""
    module = next(name for name in task if name in WRITERS)
    args = task[module] if isinstance(task[module], dict) else {}
    loop = yaml.safe_dump(task.get("loop") or task.get("with_items") or "")
    text = " ".join(str(args.get(k, "")) for k in ("content", "src", "line", "block")) + " " + loop
    if SECRET_IN_JINJA.search(text) or KEY_FILE.search(text):
        return True
    src = str(args.get("src", ""))
    if args.get("remote_src") is True:
        return True  # a host's file (Sentinel's live configuration): its content is not visible here
    if not module.endswith("template") or not src:
        return False
    items = task.get("loop") if isinstance(task.get("loop"), list) else []
    if "{{ item }}" in src and items and all(isinstance(i, str) for i in items):
        sources = [src.replace("{{ item }}", i) for i in items]
    elif "{{" in src:
        return True  # a template the inventory chooses (custom_server_config_template): it may hold anything
    else:
        sources = [src]
    return any(
        (role / "templates" / s).is_file() and SECRET_IN_JINJA.search((role / "templates" / s).read_text())
        for s in sources
    )


def secret_writing_tasks() -> list[tuple[str, dict[str, Any]]]:
    """(``role/tasks/file: task name``, task) of every file-writing task in roles/ that writes a secret."""
    found = []
    for path in sorted(ROOT.glob("roles/*/tasks/*.yml")):
        role = path.parents[1]
        for task in tasks_in(yaml.safe_load(path.read_text())):
            if any(name in WRITERS for name in task) and writes_a_secret(role, task):
                found.append((f"{path.relative_to(ROOT / 'roles')}: {task.get('name')}", task))
    return found


TASKS = secret_writing_tasks()


def test_the_search_finds_the_known_secret_writers() -> None:
    """The control: the search sees the tasks known to write secrets (it is not matching nothing)."""
    names = " | ".join(name for name, _ in TASKS)
    for expected in (
        "patroni/tasks/service.yml",
        "redis/tasks/tls_acl.yml",
        "haproxy/tasks/main.yml",
        "custom_server/tasks/configure.yml",
        "citus/tasks/node.yml",
        "redis_sentinel/tasks/main.yml: Install the configuration as the live one",
    ):
        assert expected in names, names
    assert len(TASKS) >= 10, names


@pytest.mark.parametrize(("name", "task"), TASKS, ids=[name for name, _ in TASKS])
def test_a_task_that_writes_a_secret_hides_its_diff(name: str, task: dict[str, Any]) -> None:
    assert task.get("diff") is False or task.get("no_log") is True, (
        f"{name}: writes a password or a private key: add `diff: false` (or `no_log: true`)"
    )
