"""python -m service [--host H] [--port P] [...]: serve the detector (see service.settings)."""
import logging
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    import uvicorn

    from .app import create_app
    from .settings import parse_args

    settings = parse_args(argv)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level, timeout_graceful_shutdown=settings.request_timeout_s)


if __name__ == "__main__":
    main()
