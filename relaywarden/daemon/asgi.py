"""Serve an ASGI app with uvicorn and tell systemd once the socket listens."""

from __future__ import annotations

from typing import Any

from relaywarden.daemon import notify


def serve(application: Any, host: str, port: int, **options: Any) -> None:
    """uvicorn.run, plus READY=1 after uvicorn's start-up (socket bound, app started)."""
    import uvicorn

    class NotifyingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                notify.ready(f"serving on {host}:{port}")

    NotifyingServer(uvicorn.Config(application, host=host, port=port, **options)).run()
