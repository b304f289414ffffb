"""Errors a user can cause. The CLI turns them into one clear line and exit code 2."""


class UsageError(Exception):
    """A problem the user can fix (bad path, bad config, missing store entry).

    The message names the problem and the fix in one or two sentences.
    """

    exit_code = 2
