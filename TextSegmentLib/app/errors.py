"""The application layer's error: a request that cannot be run as given (the command line exits with code 2)."""


class RequestError(ValueError):
    """Bad input, options, jobs or outputs, found before any computing: the message names the problem and what to
    do; nothing was computed or written."""
