"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or machine, with a message that says what to do."""
