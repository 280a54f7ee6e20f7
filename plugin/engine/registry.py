"""The runner registry: ``mode`` in a config names a runner class registered here.

Later features add modes by registering a class, without touching ``tools/main.py``::

    @RUNNERS.register_module(name="svm")
    class SVMRunner(Runner): ...
"""
from openpoints.utils.registry import Registry

from ..errors import ConfigError

RUNNERS = Registry("runner", scope="plugin")  # an explicit scope skips a slow inspect.stack()


def runner_for(mode: str) -> type:
    """The runner class registered for ``mode``; a wrong mode lists the valid ones."""
    runner = RUNNERS.get(mode) if isinstance(mode, str) else None
    if runner is None:
        valid = ", ".join(sorted(RUNNERS.module_dict))
        raise ConfigError(f"Unknown mode '{mode}': set mode to one of {valid}.")
    return runner
