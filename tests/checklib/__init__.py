"""Helpers the integration checks share, one module per topology (imported as ``checklib.<topology>``;
``tests`` is on pytest's ``pythonpath``, so every check module collects and runs alone)."""
