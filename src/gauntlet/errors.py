"""Errors the harness raises: each says what is wrong and what to do about it."""


class GauntletError(Exception):
    """Base of every harness error."""


class InventoryError(GauntletError):
    """The inventory cannot be read, or lacks something a check needs."""


class GroupMissing(InventoryError):
    """The inventory has no (or an empty) group a check needs; the pytest plugin turns this into a skip."""

    def __init__(self, group: str, source: str) -> None:
        super().__init__(f"inventory {source} has no hosts in group '{group}'")
        self.group = group
        self.source = source


class FaultError(GauntletError):
    """A fault could not be started or undone."""
