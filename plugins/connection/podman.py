# Copyright (c) gauntlet.cluster contributors. GNU General Public License v3.0+ (see
# https://www.gnu.org/licenses/gpl-3.0.txt): a subclass of containers.podman's podman connection (GPLv3+).
"""The podman connection with pipelining: one ``podman exec -i`` per task instead of four or five."""

from __future__ import annotations

DOCUMENTATION = """
    name: podman
    author: gauntlet.cluster
    short_description: Run tasks in podman containers, with pipelining
    description:
        - containers.podman.podman, except that commands that take input run with C(podman exec -i), so
          Ansible's pipelining works. Ansible then sends each module over stdin in one C(podman exec) instead
          of creating a temporary directory, copying the module, running it and removing the directory
          (four or five C(podman exec) calls, each close to a second on a loaded 2-core machine).
        - Molecule's podman driver names the connection C(podman); with this file on the connection plugin
          path (C(.config/molecule/config.yml) puts it there) that short name resolves here.
    options:
      remote_addr:
        description:
          - The ID of the container you want to access.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description:
          - User (name or UID) that runs commands inside the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description:
          - Extra arguments to pass to the podman command line.
        default: ''
        ini:
          - section: defaults
            key: podman_extra_args
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description:
          - Executable for podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
      pipelining:
        description:
          - Send modules over stdin (one C(podman exec -i) per task).
        type: boolean
        default: true
        env:
          - name: ANSIBLE_PIPELINING
        ini:
          - section: defaults
            key: pipelining
        vars:
          - name: ansible_pipelining
"""

# Ansible's convention: the documentation block comes first.
import shlex  # noqa: E402

from ansible.module_utils.common.text.converters import to_native  # noqa: E402
from ansible.plugins.connection import ConnectionBase, ensure_connect  # noqa: E402
from ansible_collections.containers.podman.plugins.connection.podman import (  # noqa: E402
    Connection as PodmanConnection,
)


class Connection(PodmanConnection):
    """containers.podman.podman with ``podman exec -i`` for commands that take input (pipelining)."""

    transport = "gauntlet.cluster.podman"
    has_pipelining = True

    def _connect(self):
        """Connect without mounting: only file transfers need the mount (see :meth:`put_file`), and a
        ``podman mount`` for every task costs as much as the task's own exec."""
        ConnectionBase._connect(self)
        self._connected = True
        return self

    def _mount(self):
        if not getattr(self, "_mounted", False):
            self._mounted = True
            PodmanConnection._connect(self)

    def put_file(self, in_path, out_path):
        """Copy through the container's mounted filesystem (mounted on first use)."""
        self._mount()
        super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        """Copy out through the container's mounted filesystem (mounted on first use)."""
        self._mount()
        super().fetch_file(in_path, out_path)

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        """Run ``cmd`` in the container; with input (a pipelined module) keep stdin open (``-i``)."""
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        args = ["exec"]
        if in_data is not None:
            args.append("-i")
        if self.user:
            args.extend(("--user", self.user))
        return self._podman(args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
