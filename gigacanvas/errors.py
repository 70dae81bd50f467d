"""The one exception family users see.

Every failure a user can cause or meet ends in a subclass of `GigacanvasError` whose message is a
single sentence naming the problem and, where there is one, the fix. The CLI prints it as
`gigacanvas: error: <message>`; `exit_code` says whether it was the user's input (2) or the run (1).
"""

from __future__ import annotations


class GigacanvasError(Exception):
    """Base of every error gigacanvas reports to a user."""

    exit_code = 1


class UsageError(GigacanvasError):
    """Bad input: a spec value, a path, a model, a store, a cluster too small to ever run it."""

    exit_code = 2


class RenderError(GigacanvasError):
    """The render started and failed: an actor died, a store write failed."""

    exit_code = 1
