"""The worker's tile scheduling: chunks, fairness between requests, work stopped for callers
that left, out-of-memory retries (fake tiled backends: these are about scheduling)."""
import asyncio

import numpy as np
import pytest
from service_support import FakeBackend

from service.backend import OutOfMemory
from service.batcher import Batcher


def image(height: int, width: int) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


def test_large_image_runs_in_chunks_and_a_small_request_rides_in_the_next_batch():
    backend = FakeBackend(tile=10, delay=0.01)

    async def main():
        b = Batcher(backend, max_batch_size=4, max_delay_s=0.0, queue_size=8)
        b.start()
        large = await b.submit(image(100, 100), 0.0, 1000)  # 100 tiles: 25 batches
        await asyncio.sleep(0.1)
        small = await b.submit(image(10, 10), 0.0, 1000)
        started = len(backend.batches)  # including the one running now
        result = await asyncio.wait_for(small.future, 5)
        assert not large.future.done()  # the small request did not wait for the large one
        await asyncio.wait_for(large.future, 10)
        await b.stop()
        return result, started, large.future.result()

    result, started, large = asyncio.run(main())
    assert len(result["boxes"]) == 1 and len(large["boxes"]) == 100
    assert all(len(batch) <= 4 for batch in backend.batches)
    with_small = [i for i, batch in enumerate(backend.batches) if (10, 10) in batch]
    # it joined the next batch (or, when that one was being handed over, the one after) ...
    assert len(with_small) == 1 and with_small[0] in (started, started + 1)
    # ... on its own: a chunk of the large one would have made it wait for that chunk
    assert backend.batches[with_small[0]] == [(10, 10)]
    assert sum(batch.count((100, 100)) for batch in backend.batches) == 100


def test_large_images_run_one_after_another_least_work_first():
    backend = FakeBackend(tile=10, delay=0.002)

    async def main():
        b = Batcher(backend, max_batch_size=4, max_delay_s=0.0, queue_size=8)
        b.start()
        jobs = [await b.submit(image(50, 50), 0.0, 100), await b.submit(image(40, 40), 0.0, 100)]
        await asyncio.gather(*(j.future for j in jobs))
        await b.stop()

    asyncio.run(main())
    owners = [owner for batch in backend.batches for owner in batch]
    # the 16-tile image first, whole, then the 25-tile one: neither waits for a shared finish
    assert owners == [(40, 40)] * 16 + [(50, 50)] * 25


def test_a_caller_that_gives_up_stops_its_work_at_the_next_chunk():
    backend = FakeBackend(tile=10, delay=0.01)

    async def main():
        b = Batcher(backend, max_batch_size=4, max_delay_s=0.0, queue_size=8)
        b.start()
        large = await b.submit(image(100, 100), 0.0, 1000)
        await asyncio.sleep(0.15)
        large.future.cancel()  # deadline passed or client gone (the route cancels)
        ran = sum(len(batch) for batch in backend.batches)
        small = await b.submit(image(10, 10), 0.0, 10)
        await asyncio.wait_for(small.future, 5)
        await b.stop()
        return ran

    ran = asyncio.run(main())
    total = sum(batch.count((100, 100)) for batch in backend.batches)
    assert total <= ran + 4 < 40  # at most the chunk that was running when it left


class OutOfMemoryError(RuntimeError):
    """Named like torch.OutOfMemoryError: the batcher knows it by name, without torch."""


class SmallMemory(FakeBackend):
    """Runs at most `fits` tiles at once; more raise an out-of-memory error."""

    def __init__(self, fits: int, error=OutOfMemoryError) -> None:
        super().__init__(tile=10)
        self.fits, self.error, self.refused = fits, error, 0

    def run_tiles(self, tiles):
        if len(tiles) > self.fits:
            self.refused += 1
            raise self.error(f"CUDA out of memory for {len(tiles)} tiles")
        return super().run_tiles(tiles)


@pytest.mark.parametrize("error", [OutOfMemoryError, OutOfMemory])
def test_out_of_memory_retries_the_batch_as_smaller_batches(error):
    backend = SmallMemory(fits=2, error=error)

    async def main():
        b = Batcher(backend, max_batch_size=8, max_delay_s=0.0, queue_size=8)
        b.start()
        job = await b.submit(image(20, 40), 0.0, 100)  # 8 tiles
        result = await asyncio.wait_for(job.future, 5)
        await b.stop()
        return result

    assert len(asyncio.run(main())["boxes"]) == 8
    assert backend.refused == 3  # 8 -> 4 + 4 -> 2 + 2 + 2 + 2
    assert [len(batch) for batch in backend.batches] == [2, 2, 2, 2]


def test_a_tile_that_cannot_run_alone_fails_with_out_of_memory_and_the_next_batch_runs():
    backend = SmallMemory(fits=0)

    async def main():
        b = Batcher(backend, max_batch_size=4, max_delay_s=0.0, queue_size=8)
        b.start()
        job = await b.submit(image(10, 10), 0.0, 100)
        with pytest.raises(OutOfMemory):
            await asyncio.wait_for(job.future, 5)
        backend.fits = 4  # memory freed up
        job = await b.submit(image(10, 10), 0.0, 100)
        result = await asyncio.wait_for(job.future, 5)
        await b.stop()
        return result

    assert len(asyncio.run(main())["boxes"]) == 1


def test_a_batch_that_raises_fails_only_its_own_requests():
    class Flaky(FakeBackend):
        def run_tiles(self, tiles):
            if any(owner == (10, 30) for owner, *_ in tiles):
                raise RuntimeError("device lost")
            return super().run_tiles(tiles)

    backend = Flaky(tile=10)

    async def main():
        b = Batcher(backend, max_batch_size=2, max_delay_s=0.0, queue_size=8)
        b.start()
        bad = await b.submit(image(10, 30), 0.0, 10)  # 3 tiles: batches 1 and 2
        with pytest.raises(RuntimeError, match="device lost"):
            await asyncio.wait_for(bad.future, 5)
        good = await b.submit(image(10, 20), 0.0, 10)
        result = await asyncio.wait_for(good.future, 5)
        await b.stop()
        return result

    assert len(asyncio.run(main())["boxes"]) == 2


def test_busy_for_reports_a_call_in_progress():
    backend = FakeBackend(tile=10, delay=0.3)

    async def main():
        b = Batcher(backend, max_batch_size=1, max_delay_s=0.0, queue_size=8)
        b.start()
        assert b.busy_for() == 0.0
        job = await b.submit(image(10, 10), 0.0, 10)
        await asyncio.sleep(0.2)
        busy = b.busy_for()
        await job.future
        await b.stop()
        return busy, b.busy_for()

    during, after = asyncio.run(main())
    assert 0.1 < during < 0.3 and after == 0.0
