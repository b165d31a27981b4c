"""The one exception type for mistakes a user can fix (bad config, data or checkpoint).

The CLI prints its message on one line, without a traceback, and exits non-zero. Broken invariants of our own
code are `assert`s and do show a traceback.
"""


class UserError(Exception):
    """A clear, one-line message naming the field, file or value at fault."""
