"""The one exception data loaders raise: it says which file is wrong and how to fix it."""

import contextlib
from collections.abc import Iterator

from explab.errors import ExplabError


class DataError(ExplabError, RuntimeError):
    """Missing, truncated or corrupt data; the message names the file and the fix."""


@contextlib.contextmanager
def readable_by_this_account() -> Iterator[None]:
    """Inside, data this account may not read (a colleague's files, or their private folder, on a shared
    file system) raises ``DataError`` naming the file, instead of pathlib's or gzip's PermissionError."""
    try:
        yield
    except PermissionError as error:
        raise DataError(
            f"{error.filename or 'A file of the data'} cannot be read by this account ({error.strerror}). Its "
            "owner can let you read the data (chmod -R a+rX on its folder), or copy it where you can read it: "
            "data.data_dir=FOLDER"
        ) from error
