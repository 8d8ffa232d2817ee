"""The ``advface-fast`` command line: one module per group of commands.

``app.py`` (the parser and the protection commands), ``protect_options.py`` (the options every
protecting command shares), ``train.py``, ``evaluate.py``, ``deploy.py`` (service, PostgreSQL,
FAISS) and ``demo.py``.
"""

from .app import main

__all__ = ["main"]
