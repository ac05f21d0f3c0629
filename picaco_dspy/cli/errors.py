"""The CLI's own error: a problem the user can fix, printed as one line with exit code 2."""


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


EXIT_USAGE = 2
