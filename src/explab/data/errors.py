"""The one exception data loaders raise: it says which file is wrong and how to fix it."""

from explab.errors import ExplabError


class DataError(ExplabError, RuntimeError):
    """Missing, truncated or corrupt data; the message names the file and the fix."""
