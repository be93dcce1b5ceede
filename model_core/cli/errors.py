"""The one exception a command raises for bad input on its command line."""


class UsageError(Exception):
    """Bad user input. The `lpm` main prints `lpm <cmd>: error: <message>` and exits 2."""
