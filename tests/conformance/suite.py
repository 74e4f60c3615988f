"""Deprecated location: the conformance suite ships in :mod:`mindprint_interfaces.testing.conformance`."""

from mindprint_interfaces.testing.conformance import PREFERENCES, PROBE, SFT_RECORDS, BackendConformance

__all__ = ["PREFERENCES", "PROBE", "SFT_RECORDS", "BackendConformance"]
