"""gunicorn settings for serving the portal: ``gunicorn -c python:cloud_portal.serving ...``.

The command line still says where to listen and how many workers and threads to run; this
module only holds what a command line cannot say (hooks).
"""
from __future__ import annotations

import gc
from typing import Any


def post_worker_init(worker: Any) -> None:
    """Put everything a worker holds once the app is loaded out of the garbage collector's reach.

    A loaded portal is about 200,000 objects (Flask, SQLAlchemy, pydantic, babel, the app's own
    modules) that live as long as the worker. Every full collection walks all of them (about
    110 ms on a 2-core machine), pausing whichever request is being served: those pauses were the
    80-100 ms outliers in bench/pages.py. Frozen, they are skipped; garbage made while serving
    is collected as before.
    """
    gc.collect()
    gc.freeze()
