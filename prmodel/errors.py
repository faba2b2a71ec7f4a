"""The error types prmodel raises for bad input: each message is one sentence naming the fault.

The CLI prints these without a traceback and exits non-zero; anything else is a bug.
"""


class PrmodelError(Exception):
    """Base of every error caused by the user's input or environment, not by a bug."""


def first_line(exc: BaseException, *, period: bool = True) -> str:
    """The first non-empty line of ``exc``'s message, or its type's name if it has none.

    Library errors (ONNX, ONNX Runtime, SQLite, Ray) often carry pages of detail; the first
    line is what a one-sentence prmodel error quotes. ``period=False`` drops a trailing full
    stop, for a line quoted inside a sentence.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if period else text.rstrip(".")
