"""``python -m pointnet2_ops``: print the backend in use; exit 1 under CI without native ops."""

import sys

from . import _native


def main() -> int:
    """Print the backend and whether the CUDA kernels are built; apply the CI gate.

    Returns:
        0, or 1 when :func:`pointnet2_ops._native.ci_gate_failure` reports a failure.
    """
    print(f"pointnet2_ops backend: {_native.backend()} | CUDA kernels compiled: "
          f"{_native.has_cuda_kernels()}")
    failure = _native.ci_gate_failure()
    if failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
