"""Pre-processing as config.pbtxt parameters: parsed once, applied as the model states."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference_server.backends.local import LocalBackend
from inference_server.metrics import Metrics
from inference_server.models.install_default import ONNX_MODEL
from inference_server.pipelines.vision.detector import VisionPipeline
from inference_server.pipelines.vision.preprocess import (
    Letterbox,
    Preprocessing,
    PreprocessingError,
)

# A 2x4 BGR image: left half blue-ish, right half red-ish.
IMAGE = np.zeros((2, 4, 3), np.uint8)
IMAGE[:, :2] = (200, 100, 50)
IMAGE[:, 2:] = (10, 20, 250)


def test_defaults_are_the_yolo_input() -> None:
    blob, box = Preprocessing().apply(IMAGE, 4, 4)
    assert blob.shape == (1, 3, 4, 4)
    # Centred letterbox: one padded row above and below, pad 114; RGB in 0..1.
    assert box == Letterbox(scale=1.0, pad_x=0, pad_y=1, width=4, height=2)
    np.testing.assert_allclose(blob[0, :, 0, 0], [114 / 255] * 3, rtol=1e-6)
    np.testing.assert_allclose(blob[0, :, 1, 0], [50 / 255, 100 / 255, 200 / 255], rtol=1e-6)


def test_bgr_mean_std_top_left_letterbox() -> None:
    prep = Preprocessing.from_parameters(
        {
            "color_order": "bgr",
            "input_scale": "1",
            "input_mean": "100, 100, 50",
            "input_std": "2 4 8",
            "resize": "letterbox_top_left",
            "pad_value": "0",
        }
    )
    blob, box = prep.apply(IMAGE, 4, 4)
    assert (box.pad_x, box.pad_y) == (0, 0)
    # Rows 0-1 hold the image, rows 2-3 the padding: (0 - mean) / std there.
    np.testing.assert_allclose(blob[0, :, 0, 0], [(200 - 100) / 2, (100 - 100) / 4, (50 - 50) / 8])
    np.testing.assert_allclose(blob[0, :, 0, 3], [(10 - 100) / 2, (20 - 100) / 4, (250 - 50) / 8])
    np.testing.assert_allclose(blob[0, :, 3, 0], [-50, -25, -6.25])


def test_stretch_maps_boxes_back_per_axis() -> None:
    prep = Preprocessing.from_parameters({"resize": "stretch"})
    blob, box = prep.apply(np.zeros((100, 200, 3), np.uint8), 50, 50)
    assert blob.shape == (1, 3, 50, 50)
    # Input box (10, 10)-(40, 20) is (40, 20)-(160, 40) in the 200x100 image.
    mapped = box.to_image(np.array([[10, 10, 40, 20]], np.float32))
    np.testing.assert_allclose(mapped, [[0.2, 0.2, 0.8, 0.4]], rtol=1e-6)


def test_letterbox_maps_boxes_back() -> None:
    _, box = Preprocessing().apply(np.zeros((100, 200, 3), np.uint8), 50, 50)
    # 200x100 → 50x25, padded 12 rows above (round(12.5 - 0.1)).
    assert (box.scale, box.pad_y) == (0.25, 12)
    mapped = box.to_image(np.array([[0, 12, 50, 37]], np.float32))
    np.testing.assert_allclose(mapped, [[0, 0, 1, 1]], atol=1e-6)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"color_order": "RGBA"}, "color_order"),
        ({"resize": "crop"}, "resize"),
        ({"input_mean": "1 2"}, "input_mean"),
        ({"input_std": "1 0 1"}, "input_std"),
        ({"input_scale": "-1"}, "input_scale"),
        ({"input_scale": "nan"}, "input_scale"),
        ({"pad_value": "300"}, "pad_value"),
    ],
)
def test_bad_parameters_are_named(parameters: dict[str, str], message: str) -> None:
    with pytest.raises(PreprocessingError, match=message):
        Preprocessing.from_parameters(parameters)


def test_a_model_with_bad_parameters_is_not_served(model_repo: Path, tmp_path: Path) -> None:
    """One broken config.pbtxt is logged and skipped; the other models keep serving."""
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / ONNX_MODEL, repo / ONNX_MODEL)
    broken = repo / "broken"
    shutil.copytree(model_repo / ONNX_MODEL, broken)
    config = (broken / "config.pbtxt").read_text().replace(f'"{ONNX_MODEL}"', '"broken"')
    config += 'parameters { key: "color_order" value: { string_value: "CMYK" } }\n'
    (broken / "config.pbtxt").write_text(config)

    async def served() -> list[str]:
        backend = LocalBackend(repo)
        await backend.start()
        try:
            assert set(backend.models()) == {ONNX_MODEL, "broken"}
            pipeline = VisionPipeline(backend, Metrics(), default_model=ONNX_MODEL)
            return list(pipeline.models())
        finally:
            await backend.stop()

    assert asyncio.run(served()) == [ONNX_MODEL]
