"""The one error type of the data package.

Bad input that the user can fix (a missing folder, a class with no images, an IDX file with the
wrong magic number, an HDF5 file that ``prepare`` did not write, ...) raises ``DataError`` with a
one-line message that names the file. ``DataError`` is a ``ValueError``, and its missing-file form
``DataFileNotFoundError`` is also a ``FileNotFoundError``, so callers can catch either family.

Unreadable single images met while iterating (a truncated JPEG, a corrupt PNG) are *not* raised
out of the loader: they are skipped and counted (see ``Dataset.skipped``), so an epoch never
crashes half-way.
"""


class DataError(ValueError):
    """A dataset, image or cache file that cannot be used; the message names the file."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A dataset folder or file that does not exist."""
