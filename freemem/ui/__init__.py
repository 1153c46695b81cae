"""``freemem ui``: a local web page to inspect what freemem forgot in a thread, when, and why.

:class:`ThreadSource` reads any checkpointer and archive (no web code); :func:`create_app` serves it as an ASGI
app (Starlette, ``pip install 'freemem[ui]'``); ``freemem ui --redis URL | --sqlite PATH`` runs it under
uvicorn on 127.0.0.1. See :mod:`freemem.ui.app` for the routes and what guards them.
"""

from freemem.ui.source import ThreadPage, ThreadSource, ThreadSummary, rebuild

__all__ = ["ThreadPage", "ThreadSource", "ThreadSummary", "create_app", "rebuild"]


def __getattr__(name: str):
    if name == "create_app":
        from freemem.ui.app import create_app

        return create_app
    raise AttributeError(name)
