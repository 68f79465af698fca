"""Seeded malformed uploads built from real photos, and a keep-alive client that sends them.

`cases(seed, n)` yields (name, body, content_type): the uploads the issue found breaking the
service first, then random mutations of JPEG/PNG/WebP/BMP/TIFF/GIF encodings of scikit-image's
CC0 photos: truncations, byte flips, header edits, declared-size edits (PNG IHDR, JPEG SOF, BMP
and GIF headers), cut/duplicated/inserted spans, appended garbage, and multipart framing damage.
`send_all` posts them on one keep-alive connection and sorts every answer into what the service
promises: 200 with boxes inside the image, or a 4xx with a JSON `detail`; never a 5xx, never a
reset connection.
"""
import http.client
import io
import json
import random
import struct
import zlib
from collections import Counter
from typing import Iterator, List, Tuple

import numpy as np
from PIL import Image

Case = Tuple[str, bytes, str]

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
           "TIFF": "image/tiff", "GIF": "image/gif"}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
SIZES = (0, 1, 2, 3, 255, 4096, 65000, 65535, 200000, 2**31 - 1, 2**32 - 1)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def seeds(size: int = 48) -> List[Tuple[str, bytes]]:
    """(name, bytes) of small crops of real photos in every format (RGB, grey and RGBA)."""
    from skimage import data

    out = []
    for name in PHOTOS:
        photo = getattr(data, name)()[:size, :size + 16]
        for mode in ("RGB", "L", "RGBA"):
            image = Image.fromarray(photo).convert(mode)
            for fmt in FORMATS:
                if mode == "RGBA" and fmt in ("JPEG", "BMP"):
                    continue
                out.append((f"{name}-{mode}.{fmt.lower()}", _encode(image, fmt)))
    return out


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


def png(width: int, height: int, extra: bytes = b"", mode: int = 0) -> bytes:
    """A PNG declaring width x height (colour type `mode`) with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def _sof(jpeg: bytes) -> int:
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        at = jpeg.find(marker, 2)
        if at > 0:
            return at
    return -1


def jpeg_sized(jpeg: bytes, width: int, height: int) -> bytes:
    at = _sof(jpeg)
    return jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


def known_cases() -> List[Case]:
    """The uploads issue 12 reported as 500s, resets or denial of service."""
    photo = Image.fromarray(np.asarray(Image.new("RGB", (40, 30), (90, 140, 60))))
    jpeg, bmp = _encode(photo, "JPEG"), _encode(photo, "BMP")
    sof = _sof(jpeg)
    icc = _chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * (2 << 20)))
    good_png = _encode(photo, "PNG")
    return [
        ("jpeg-cut-at-20", jpeg[:20], "image/jpeg"),
        ("jpeg-sof-7-bytes", jpeg[sof:sof + 7], "image/jpeg"),
        ("jpeg-soi-and-7-sof-bytes", jpeg[:2] + jpeg[sof:sof + 7], "image/jpeg"),
        ("webp-vp8l-16-bytes", b"RIFF\0\0\0\0WEBPVP8L", "image/webp"),
        ("bmp-18-byte-header", bmp[:18], "image/bmp"),
        ("bmp-unsupported-compression", bmp[:30] + struct.pack("<I", 99) + bmp[34:], "image/bmp"),
        ("png-1x1-iccp-2mb", png(1, 1, icc, mode=2), "image/png"),
        ("png-cut-in-ihdr", good_png[:20], "image/png"),
        ("png-cut-in-idat", good_png[:len(good_png) - 20], "image/png"),
        ("png-1x200000-grey", png(1, 200000), "image/png"),
        ("jpeg-sof-1x65000", jpeg_sized(jpeg, 1, 65000), "image/jpeg"),
        ("jpeg-sof-65000x1", jpeg_sized(jpeg, 65000, 1), "image/jpeg"),
    ]


def _edit_size(rng: random.Random, name: str, data: bytearray) -> bytearray:
    w, h = rng.choice(SIZES), rng.choice(SIZES)
    if name.endswith(".png") and len(data) >= 33:
        data[16:24] = struct.pack(">II", w, h)
        if rng.random() < 0.7:  # a valid CRC, so the decoder believes the header
            data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    elif name.endswith(".jpeg") and _sof(bytes(data)) > 0:
        data = bytearray(jpeg_sized(bytes(data), w & 0xFFFF, h & 0xFFFF))
    elif name.endswith(".bmp") and len(data) >= 26:
        data[18:26] = struct.pack("<ii", w & 0x7FFFFFFF, -(h & 0x7FFFFFFF) if rng.random() < 0.3
                                  else h & 0x7FFFFFFF)
    elif name.endswith(".gif") and len(data) >= 10:
        data[6:10] = struct.pack("<HH", w & 0xFFFF, h & 0xFFFF)
    return data


def mutate(rng: random.Random, name: str, data: bytes) -> Tuple[str, bytes]:
    out, done = bytearray(data), []
    for _ in range(rng.choice((1, 1, 2, 3))):
        kind = rng.choice(("truncate", "flip", "header", "size", "cut", "repeat", "insert",
                           "append"))
        n = len(out)
        if n < 4:
            break
        a = rng.randrange(n)
        b = min(n, a + rng.randrange(1, 64))
        if kind == "truncate":
            out = out[:rng.randrange(1, n)]
        elif kind == "flip":
            for _ in range(rng.randrange(1, 9)):
                out[rng.randrange(n)] ^= rng.randrange(1, 256)
        elif kind == "header":
            at = rng.randrange(min(n, 64))
            out[at:at + 4] = bytes(rng.choice((0, 0xFF, rng.randrange(256))) for _ in range(4))
        elif kind == "size":
            out = _edit_size(rng, name, out)
        elif kind == "cut":
            del out[a:b]
        elif kind == "repeat":
            out[a:a] = out[a:b]
        elif kind == "insert":
            out[a:a] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
        else:
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 256)))
        done.append(kind)
    return f"{name}:{'+'.join(done)}", bytes(out)


def multipart(rng: random.Random, body: bytes, content_type: str) -> Tuple[str, bytes, str]:
    """`body` as multipart field "image", sometimes with damaged framing."""
    boundary = "fuzz%08x" % rng.randrange(2**32)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"upload\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    damage = rng.choice(("none", "none", "no-end", "cut", "field", "boundary"))
    form = head + body + tail
    if damage == "no-end":
        form = head + body
    elif damage == "cut":
        form = form[:rng.randrange(1, len(form))]
    elif damage == "field":
        form = form.replace(b'name="image"', b'name="photo"')
    elif damage == "boundary":
        form = form.replace(boundary.encode(), b"other", 1)
    return f"multipart-{damage}", form, f"multipart/form-data; boundary={boundary}"


def cases(seed: int, n: int, photos: List[Tuple[str, bytes]] = None) -> Iterator[Case]:
    """The known cases, then random ones, `n` in all."""
    rng = random.Random(seed)
    photos = photos or seeds()
    known = known_cases()
    yield from known[:n]
    for _ in range(n - len(known)):
        name, data = rng.choice(photos)
        fmt = name.rsplit(".", 1)[1].upper()
        if rng.random() < 0.9:
            name, data = mutate(rng, name, data)
        declared = FORMATS[fmt] if rng.random() < 0.8 else rng.choice(list(FORMATS.values()))
        if rng.random() < 0.25:
            framing, data, declared = multipart(rng, data, declared)
            name = f"{name}:{framing}"
        yield name, data, declared


class Tally:
    """Answers by status, and every broken promise (5xx, reset, malformed answer)."""

    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.broken: List[str] = []
        self.resets = 0

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (f"{sum(self.statuses.values()) + self.resets} cases; {codes}; resets: "
                f"{self.resets}; 5xx: {sum(v for k, v in self.statuses.items() if k >= 500)}")


def check(tally: Tally, name: str, status: int, body: bytes) -> None:
    tally.statuses[status] += 1
    try:
        answer = json.loads(body)
    except ValueError:
        tally.broken.append(f"{name}: {status} without a JSON body")
        return
    if status == 200:
        w, h = answer["width"], answer["height"]
        for d in answer["detections"]:
            x1, y1, x2, y2 = d["box"]
            if not (0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h):
                tally.broken.append(f"{name}: box {d['box']} outside {w} x {h}")
    elif not (400 <= status < 500 and isinstance(answer.get("detail"), str) and answer["detail"]):
        tally.broken.append(f"{name}: {status} {answer}")


def send_all(host: str, port: int, uploads: Iterator[Case], timeout: float = 120) -> Tally:
    """Posts every upload on one keep-alive connection (http.client reopens it only after an
    answer that says `Connection: close`); a connection that breaks instead counts as a reset."""
    tally = Tally()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    for name, body, content_type in uploads:
        try:
            conn.request("POST", "/detect?score_threshold=0.1", body,
                         {"Content-Type": content_type})
            response = conn.getresponse()
            check(tally, name, response.status, response.read())
        except (http.client.HTTPException, OSError) as e:
            tally.resets += 1
            tally.broken.append(f"{name}: connection broke: {type(e).__name__}: {e}")
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.close()
    return tally
