"""The one exception type that the command line turns into a one-line message and exit code 2."""


class NcaError(Exception):
    """A problem the user can fix: bad input, missing weights, an unusable rule file.

    The message is shown as is, so it should say what is wrong and what to do about it.
    """
