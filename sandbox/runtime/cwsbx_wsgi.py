"""gunicorn entry point for the sandbox's OpenStack APIs.

Keystone, Nova and Neutron hand ``sys.argv`` to oslo.config; under gunicorn that
is gunicorn's own command line, which oslo.config rejects, so the worker dies
and is respawned forever. Reset it before importing the real application,
named by CWSBX_WSGI_APP as "module:attribute".
"""

import importlib
import os
import sys

sys.argv = sys.argv[:1]

_module_name, _, _attr = os.environ["CWSBX_WSGI_APP"].partition(":")
application = getattr(importlib.import_module(_module_name), _attr or "application")

if os.environ.get("CWSBX_CONFIGURE_MAPPERS"):
    # Neutron: map every ORM relationship now, not on the first request of a
    # fresh worker (which can otherwise 500 on GET /v2.0/ports).
    import sqlalchemy.orm

    sqlalchemy.orm.configure_mappers()
