"""The package's version, written once (setup.cfg and the CLI read it from here)."""
__version__ = "0.1.0"
