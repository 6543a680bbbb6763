"""The package version, at the bottom so every layer may stamp it."""
__version__ = "0.1.0"
