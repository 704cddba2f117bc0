"""Errors shared across components: input a person must fix (the CLI exits 2 with the message)."""


class BadInputError(Exception):
    """Input a person must fix: a missing file, a bad CSV header, an unknown option value."""
