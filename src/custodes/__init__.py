"""custodes: a disclosure gateway for confidential government records."""

__version__ = "0.1.0"
