"""The one exception type the CLI turns into a one-line message and exit code 2."""


class BenchError(Exception):
    """Bad input or an unusable file: reported as one line, never as a traceback."""


class GateError(Exception):
    """An implementation disagreed with the reference on a cell's data: the run stops."""
