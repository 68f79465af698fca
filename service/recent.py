"""Recent detections kept for GET /offsets/{id}: the upload bytes (compressed, re-decoded on
demand) and the detections, bounded by count and bytes, oldest dropped first."""
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from .backend import Detections


@dataclass
class Record:
    data: bytes
    width: int
    height: int
    detections: Detections
    model: str = ""   # the served model and version that detected them
    version: int = 0


class RecentResults:
    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: "OrderedDict[str, Record]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, key: str, record: Record) -> None:
        if self.max_items == 0 or len(record.data) > self.max_bytes:
            return
        with self._lock:
            self._items[key] = record
            self._bytes += len(record.data)
            while len(self._items) > self.max_items or self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.data)

    def get(self, key: str) -> Optional[Record]:
        with self._lock:
            return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)
