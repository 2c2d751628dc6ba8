"""``lambdamr dashboard``: watch every job of a storage live in a browser.

``open_dashboard(storage, prefix, signer)`` starts a local, read-only web server (see
``server``) that reads the job history (``lambdamr.driver.history``) of that storage only —
so it shows the jobs of any driver, on this machine or another, and the past ones.
``LambdaExecutor.dashboard()`` opens one on the executor's storage.
"""

from __future__ import annotations

from lambdamr.dashboard.reader import DashboardReader
from lambdamr.dashboard.server import DEFAULT_HOST, DEFAULT_PORT, Dashboard
from lambdamr.signing import Signer
from lambdamr.storage import Storage


def open_dashboard(
    storage: Storage, prefix: str, signer: Signer, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> Dashboard:
    """Serve the dashboard of the jobs under ``prefix`` of ``storage`` on ``host:port``
    (``port=0``: any free port); returns the running ``Dashboard`` (``.url``, ``.close()``).

    Raises:
        LambdaMRError: the port is taken or the address cannot be bound.
    """
    return Dashboard(DashboardReader(storage, prefix, signer), host=host, port=port)


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Dashboard", "DashboardReader", "open_dashboard"]
