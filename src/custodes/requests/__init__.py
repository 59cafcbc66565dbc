"""Requests: the interchange format, intake, and the synthetic request generator."""
