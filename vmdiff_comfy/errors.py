"""The one error type of bad node inputs."""


class VMDiffInputError(ValueError):
    """A bad node input; the message names the input and the fix."""
