"""Errors a user can fix. Their message is one line naming the file and the fix."""


class UserError(RuntimeError):
    """Bad input or a conflicting output directory; printed as one line, exit code 2."""


class DatasetFormatError(ValueError):
    """A dataset file is missing or malformed. The message is one line naming the file and the fix."""
