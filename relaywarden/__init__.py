"""RelayWarden: the milter that keeps a VPS provider's outbound relay clean."""

__version__ = "0.1.0"
