"""python -m service [--host H] [--port P] [...]: serve the detector (see service.settings).

Exit status: 0 after a graceful shutdown (SIGTERM: accepted requests are answered first), 3 when
the service cannot go on (the model failed to load, or the backend hung: see service.watchdog).
"""
import logging
import os
import signal
from typing import List, Optional

log = logging.getLogger("dcnserve")

FATAL_EXIT = 3


def main(argv: Optional[List[str]] = None, backend=None) -> None:
    """Serves until SIGTERM/SIGINT; `backend` replaces the configured one (tests)."""
    import uvicorn

    from .app import create_app
    from .settings import parse_args

    settings = parse_args(argv)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fatal: List[str] = []
    server: Optional[uvicorn.Server] = None

    def stop(reason: str) -> None:
        fatal.append(reason)
        server.should_exit = True

    app = create_app(settings, backend, on_fatal=stop)
    server = uvicorn.Server(uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        timeout_graceful_shutdown=settings.request_timeout_s))
    # uvicorn re-raises the signal it shut down for once it is done; with the default SIGTERM
    # action that would turn a clean drain into death by signal (exit status 143).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if fatal:
        log.critical("exiting: %s", fatal[0])
        logging.shutdown()
        os._exit(FATAL_EXIT)  # a hung inference thread cannot be joined


if __name__ == "__main__":
    main()
