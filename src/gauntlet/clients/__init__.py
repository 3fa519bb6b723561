"""Clients of the services under test that record every operation into a History."""
