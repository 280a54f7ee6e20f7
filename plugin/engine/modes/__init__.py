"""The modes of ``tools/main.py``, one module each; importing them registers them in ``RUNNERS``.

A mode imports the shared engine modules (runner, loop, data, builders, config, run folders), never
another mode for its helpers.
"""
from . import extract, finetune, gdpa, nshot, pretrain, resume, retrieval, selftrain, stages, svm, test, train, zeroshot  # noqa: F401,E501
