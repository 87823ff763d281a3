"""The package version, kept in one place so that hatchling and the User-Agent agree."""

__version__ = "0.1.0"
"""The installed ctgt-async version; also sent in the ``User-Agent`` header."""
