"""The engine's error for unusable inputs (imported by every engine module that reads or checks inputs)."""


class InputError(ValueError):
    """An input image, prompt or refinement prompt cannot be used; the message names the problem and what to do."""
