"""Errors a user can act on.

Every problem caused by the user's input (a file, a folder, an option) is raised as a
:class:`UserError` whose message is one line naming the offending file or option and what is wrong
with it. The command-line tool prints that line instead of a traceback.
"""


class UserError(Exception):
    """A problem with the user's input, described in one line."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""
