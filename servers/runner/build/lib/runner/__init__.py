"""Reference entity runtime of gauntlet.cluster (servers/runner): see README.md."""

__version__ = "0.1.0"
