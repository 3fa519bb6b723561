"""How each planted defect of :mod:`gauntlet.nemesis.defects` is planted and undone, one module per
service."""
