"""A planted file edit and its undo: the original is kept beside the file until the undo puts it back."""

from __future__ import annotations

import shlex

from gauntlet.cluster import Host

# A planted file's original, kept beside it until the undo puts it back.
SAVED = ".gauntlet-planted"


def save_and_edit(host: Host, path: str, edit: str) -> None:
    """Keep ``path``'s original beside it (once: a second plant keeps the first original), then run the
    shell command ``edit``."""
    saved = shlex.quote(path + SAVED)
    host.run(f"[ -e {saved} ] || cp -p {shlex.quote(path)} {saved}; {edit}", check=True)


def restore(host: Host, path: str) -> bool:
    """Put ``path``'s original back; False when there was none to put back."""
    saved = shlex.quote(path + SAVED)
    return host.run(f"[ -e {saved} ] && mv -f {saved} {shlex.quote(path)}").ok
