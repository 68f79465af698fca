"""Fuzzed uploads (tests/service/upload_fuzz.py) against the HTTP service with a fast fake backend: every
answer is a 200 with boxes inside the image or a 4xx with a JSON detail, on one keep-alive
connection; no 5xx, no reset. DCN_FUZZ_CASES (default 300; `make fuzz`: 5000) and DCN_FUZZ_SEED
set the run. The same cases against the shipped model are in test_service_http.py."""
import os

from service_support import FakeBackend, live_server
from upload_fuzz import cases, send_all

from service.app import create_app
from service.settings import Settings


def test_fuzzed_uploads_get_a_200_or_a_4xx_and_never_break_the_connection():
    n = int(os.environ.get("DCN_FUZZ_CASES", "300"))
    seed = int(os.environ.get("DCN_FUZZ_SEED", "12"))
    app = create_app(Settings(max_tiles=64), backend=FakeBackend(tile=64))
    with live_server(app) as url:
        host, port = url.split("//")[1].split(":")
        tally = send_all(host, int(port), cases(seed, n))
    print(f"\nfuzz (seed {seed}): {tally.summary()}")
    assert not tally.broken, "\n".join(tally.broken[:20])
    assert tally.resets == 0 and sum(tally.statuses.values()) == n
    assert tally.statuses[200] > 0 and tally.statuses[400] > 0 and tally.statuses[413] > 0
