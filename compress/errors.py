"""Errors a user can act on: each message names what was wrong and how to fix it."""


class CompressError(Exception):
    """Base class for errors reported to the user without a traceback."""


class RecipeError(CompressError):
    """A recipe or override that does not validate."""


class DataError(CompressError):
    """Task data that is missing or malformed."""


class ModelSourceError(CompressError):
    """A model that cannot be loaded from the source the recipe names."""


class LockError(CompressError):
    """Another run holds the artifacts directory."""
