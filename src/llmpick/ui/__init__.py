"""The workbench: a local web page to test models on your data without code.

``llmpick ui`` serves it; :func:`create_ui_app` builds the standalone app and
:func:`mount_workbench` adds it to another FastAPI app (the gateway's). See
``docs/workbench.md``.
"""

from llmpick.ui.app import Workbench, create_ui_app, mount_workbench, workbench_router
from llmpick.ui.models import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Workbench", "create_ui_app", "mount_workbench", "workbench_router"]
