"""How every tab shows a backend error: one ``gr.Error`` line that says what to change, never a traceback."""

from __future__ import annotations

from contextlib import contextmanager

import gradio as gr

from explorer.backend.common import Cancelled, os_error_message

# What the backend raises for something the user can change (bad input or settings, missing data, an
# unwritable folder) or did (cancel); anything else is a bug and keeps Gradio's generic error.
USER_ERRORS = (ValueError, FileNotFoundError, OSError, Cancelled)


def user_message(err: BaseException) -> str:
    """The line shown for ``err``: the first line of its message; for an ``OSError`` (a full disk, no
    permission), which file and what to check, as the command line says it (``explorer.cli.main``)."""
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) and err.strerror:
        return os_error_message(err)
    return (str(err) or type(err).__name__).splitlines()[0]


@contextmanager
def shown_to_user():
    """``with shown_to_user(): ...`` turns a :data:`USER_ERRORS` exception raised inside into
    ``gr.Error(user_message(err))`` (also inside a streaming generator)."""
    try:
        yield
    except USER_ERRORS as err:
        raise gr.Error(user_message(err)) from None
