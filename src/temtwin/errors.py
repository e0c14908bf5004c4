"""User-facing errors.

A :class:`UserError` is a problem with the user's input (a file, the dataset layout, the
configuration) that the user can fix.  It is reported as one line naming the file and the fix,
never as a traceback; the workflow adapters and the command line catch it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix; ``str(err)`` is the one line shown to the user.

    Parameters
    ----------
    message:
        What is wrong and how to fix it.
    path:
        The offending file or folder, prefixed to the message when given.
    """

    def __init__(self, message: str, path: object | None = None):
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class NotApplicable(Exception):
    """A stage does not apply to this input (e.g. GPA on an amorphous image).

    Stages catch it and write an output that records ``applicable = False`` and the reason, so
    that downstream stages and the summary can say why a result is missing.
    """
