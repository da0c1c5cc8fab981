"""The version of pyrovae."""

__version__ = "0.1.0"
