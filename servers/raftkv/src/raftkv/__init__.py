"""raftkv: the reference Raft key-value server of gauntlet.cluster (see the package README)."""

__version__ = "0.1.0"
