"""The error types prmodel raises for bad input: each message is one sentence naming the fault.

The CLI prints these without a traceback and exits non-zero; anything else is a bug.
"""


class PrmodelError(Exception):
    """Base of every error caused by the user's input or environment, not by a bug."""
