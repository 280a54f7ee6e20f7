"""Exceptions raised by pointnet2_ops."""


class PointOpsInputError(ValueError):
    """An op received an invalid argument.

    The message is one sentence that names the offending argument and how to fix it.
    """
