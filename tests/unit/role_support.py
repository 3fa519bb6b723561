"""Run one of the collection's roles with ansible-playbook against the controller itself (role preflight tests).

The play runs on localhost in check mode by default, so nothing could be changed even if a check let bad input
through; other group members are inventory entries only and are never contacted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

needs_ansible_playbook = pytest.mark.skipif(
    shutil.which("ansible-playbook") is None, reason="ansible-playbook not installed"
)


def play_for(role: str) -> str:
    """A one-play playbook that applies ``role`` to localhost without gathering facts."""
    return f"- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles:\n    - role: {role}\n"


def ansible_playbook(
    playbook: Path, inventory: str, variables: dict[str, object], check: bool = True, tags: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``playbook`` with this checkout's collection and roles, ``variables`` as extra vars (bounded: 120 s);
    ``tags`` limits the tasks run (tasks tagged ``always``, such as argument-spec validation, still run)."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [
            "ansible-playbook",
            *(["--check"] if check else []),
            *(["--tags", tags] if tags else []),
            "-i",
            inventory,
            "-e",
            json.dumps(variables),
            str(playbook),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# A module that returns the facts it is given: a play's first task gives each inventory host the facts a
# real run would have gathered (addresses), so roles that derive peers from facts run against no host.
FAKE_FACTS_MODULE = """#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True)
module.exit_json(changed=False, ansible_facts=module.params["facts"])
"""


def role_tasks_play(directory: Path, role: str, tasks_from: str, hosts: str, template: str = "") -> Path:
    """Write a playbook (and the fake-facts module beside it) into ``directory``: every host gets its
    ``fake_facts`` inventory variable as facts, then ``hosts`` run ``tasks_from`` of ``role`` and, if
    ``template`` (a path under the role's templates/) is given, render it with the role's variables to
    ``directory/rendered/<host>``. Returns the playbook's path."""
    (directory / "library").mkdir(parents=True, exist_ok=True)
    (directory / "library" / "gauntlet_fake_facts.py").write_text(FAKE_FACTS_MODULE)
    (directory / "rendered").mkdir(exist_ok=True)
    render = (
        "    - name: Render the role's template\n"
        "      ansible.builtin.template:\n"
        f"        src: {ROOT / 'roles' / role.rsplit('.', 1)[-1] / 'templates' / template}\n"
        f'        dest: "{directory / "rendered"}/{{{{ inventory_hostname }}}}"\n'
        "        mode: '0600'\n"
        if template
        else ""
    )
    play = directory / "play.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Give each host the facts a run would have gathered\n"
        "      gauntlet_fake_facts:\n        facts: '{{ fake_facts }}'\n"
        "      when: fake_facts is defined\n"
        f"- hosts: {hosts}\n  gather_facts: false\n  tasks:\n"
        "    - name: Run the role's tasks\n"
        "      ansible.builtin.include_role:\n"
        f"        name: {role}\n        tasks_from: {tasks_from}\n        public: true\n" + render
    )
    return play
