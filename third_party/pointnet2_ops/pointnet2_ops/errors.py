"""Exceptions raised by pointnet2_ops."""


class PointOpsInputError(ValueError):
    """An op received an invalid argument.

    The message is one sentence that names the offending argument and how to fix it.
    """


class PointOpsIndexError(PointOpsInputError, IndexError):
    """An index argument holds a value outside ``[0, N)``; both a ValueError and an IndexError."""
