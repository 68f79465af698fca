"""Decoded pixels pinned: small images built here with known pixel values, and the RGB array the
service's decoder must make of each (colour order, orientation, alpha, CMYK, 16-bit). The
expected arrays come from the formats' definitions, not from running the decoder. Last, the
served detections on a real photo against the in-process model's."""
import time

import numpy as np
import pytest
from PIL import Image
from service_support import encode, photo

from service.images import decode

# Six distinct colours, 2 rows x 3 columns: any channel swap, flip or rotation changes the array.
RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                [[250, 200, 10], [20, 130, 240], [7, 7, 7]]], np.uint8)
WHITE = (255, 255, 255)


def decoded(image: Image.Image, fmt: str = "PNG", **params) -> np.ndarray:
    return decode(encode(image, fmt, **params), 10**6)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_rgb_is_rgb(fmt):
    params = {"lossless": True} if fmt == "WEBP" else {}
    np.testing.assert_array_equal(decoded(Image.fromarray(RGB), fmt, **params), RGB)


def test_jpeg_colours_stay_in_their_channels():
    # Lossy: flat 16x16 blocks of pure red, green and blue keep their dominant channel.
    blocks = np.repeat(np.repeat(RGB[:1], 16, axis=0), 16, axis=1)
    out = decoded(Image.fromarray(blocks), "JPEG", quality=95).astype(int)
    centres = out[8, 8::16]
    np.testing.assert_allclose(centres, RGB[0], atol=8)


def test_grey_is_repeated_in_all_three_channels():
    grey = np.array([[0, 1, 128], [200, 254, 255]], np.uint8)
    np.testing.assert_array_equal(decoded(Image.fromarray(grey, "L")),
                                  np.repeat(grey[..., None], 3, axis=2))


def test_palette_indices_become_their_colours():
    image = Image.fromarray(np.array([[0, 1, 2], [3, 4, 5]], np.uint8), "P")
    image.putpalette(RGB.reshape(-1).tolist())
    np.testing.assert_array_equal(decoded(image), RGB)


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha compositing on white: c * a + 255 * (1 - a), a in [0, 1]."""
    a = alpha[..., None] / 255.0
    return rgb * a + 255.0 * (1.0 - a)


def test_rgba_is_composited_on_white():
    alpha = np.array([[255, 0, 128], [64, 255, 0]], np.uint8)
    rgba = np.concatenate([RGB, alpha[..., None]], axis=2)
    out = decoded(Image.fromarray(rgba, "RGBA"))
    np.testing.assert_allclose(out, over_white(RGB, alpha), atol=1)
    np.testing.assert_array_equal(out[0, 1], WHITE)  # fully transparent
    np.testing.assert_array_equal(out[0, 0], RGB[0, 0])  # opaque


def test_grey_with_alpha_and_transparent_palette_entry_on_white():
    la = np.stack([np.full((2, 3), 40, np.uint8), np.array([[255, 0, 0], [255, 255, 0]],
                                                            np.uint8)], axis=2)
    out = decoded(Image.fromarray(la, "LA"))
    np.testing.assert_array_equal(out[..., 0], [[40, 255, 255], [40, 40, 255]])
    image = Image.fromarray(np.array([[0, 1, 2], [3, 4, 5]], np.uint8), "P")
    image.putpalette(RGB.reshape(-1).tolist())
    out = decoded(image, transparency=4)  # palette entry 4 is transparent
    expected = RGB.copy()
    expected[1, 1] = WHITE
    np.testing.assert_array_equal(out, expected)


def test_cmyk_is_converted_by_its_definition():
    # R = (255 - C)(255 - K) / 255, and so on: cyan, magenta, yellow, black, white, half grey.
    cmyk = np.array([[[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0]],
                     [[0, 0, 0, 255], [0, 0, 0, 0], [0, 0, 0, 128]]], np.uint8)
    expected = np.array([[[0, 255, 255], [255, 0, 255], [255, 255, 0]],
                         [[0, 0, 0], WHITE, [127, 127, 127]]], np.uint8)
    out = decoded(Image.fromarray(cmyk, "CMYK"), "TIFF")
    np.testing.assert_allclose(out, expected, atol=1)


@pytest.mark.parametrize("orientation,turn", [(3, 2), (6, -1), (8, 1)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_turns_the_stored_pixels_upright(orientation, turn, fmt):
    # 3: rotate 180 to display, 6: 90 clockwise, 8: 90 counter-clockwise (np.rot90 turns CCW).
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = np.repeat(np.repeat(RGB, 16, axis=0), 16, axis=1)  # 16 x 16 blocks
    out = decoded(Image.fromarray(stored), fmt, exif=exif, quality=95)
    expected = np.rot90(stored, turn)
    assert out.shape == expected.shape
    if fmt == "JPEG":  # lossy, colours bleed at block edges: compare the blocks' centres
        out, expected = out[8::16, 8::16].astype(int), expected[8::16, 8::16]
    np.testing.assert_allclose(out, expected, atol=0 if fmt == "PNG" else 24)


def test_sixteen_bit_grey_is_scaled_not_truncated():
    wide = np.array([[0, 257, 32896], [65535, 1000, 65280]], np.uint16)
    expected = np.array([[0, 1, 128], [255, 4, 254]], np.uint8)  # round(v / 65535 * 255)
    out = decoded(Image.fromarray(wide))
    np.testing.assert_array_equal(out, np.repeat(expected[..., None], 3, axis=2))


def test_served_detections_equal_the_in_process_models():
    """The whole path (upload, decoder, batcher, response) against the model called directly
    on the photo's pixels read without the service's decoder."""
    from fastapi.testclient import TestClient

    from model.runtimes.loading import load_runtime
    from service.app import create_app
    from service.settings import Settings

    image = photo("SOAP_061")[:256, :320]
    want = load_runtime("torch").predict([image.copy()], score_threshold=0.2,
                                         max_detections=300)[0]
    assert len(want["boxes"]) >= 5
    with TestClient(create_app(Settings(backend="torch", device="cpu",
                                        max_batch_size=1))) as client:
        for _ in range(600):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.1)
        r = client.post("/detect", content=encode(image), params={"score_threshold": 0.2},
                        headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    got = r.json()["detections"]
    assert len(got) == len(want["boxes"])
    np.testing.assert_allclose([d["box"] for d in got], want["boxes"], atol=0.006)
    np.testing.assert_allclose([d["score"] for d in got], want["scores"], atol=1e-5)
