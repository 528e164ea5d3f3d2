"""The one exception type that the command line turns into a one-line message and exit code 2."""


class NcaError(Exception):
    """A problem the user can fix: bad input, missing weights, an unusable rule file.

    The message is shown as is, so it should say what is wrong and what to do about it.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(f"{param} {message}" if param else message)
        self.param = param  # the parameter the message is about; the command line names its flag instead
        self.detail = message  # the message without the parameter's name


def printable(text: str) -> str:
    """`text` with its control characters written as escapes (`\\x1b`, `\\n`): a file name may hold
    terminal escape sequences or line breaks, and a message must stay one harmless line."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)
