"""The run report: one self-contained HTML page (plots embedded) built from what a run left on disk."""

from gauntlet.report.build import build_report

__all__ = ["build_report"]
