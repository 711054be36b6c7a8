"""The model installer: checksummed files from the cache or their URL, each model loaded once.

The "download" is a real urllib fetch of a file:// URL (no internet here): the same code path
an online host takes for https://, with the same sha256 check.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference_server.models import install_default
from inference_server.models.catalogue import CATALOGUE, COCO_LABELS
from inference_server.models.repository import load_repository

SHARED_MODELS = Path(__file__).resolve().parents[3] / "shared" / "models"
DEFAULT = CATALOGUE[install_default.DEFAULT_MODEL]


@pytest.fixture
def cached_default() -> Path:
    path = SHARED_MODELS / DEFAULT.filename
    if not path.is_file():
        pytest.skip(f"{path} is absent (the model cache beside the checkout)")
    return path


def test_default_repository_loads_each_model_once(tmp_path: Path, cached_default: Path) -> None:
    repo = tmp_path / "models"
    written = install_default.install_default_models(repo, cache=SHARED_MODELS)
    assert f"{DEFAULT.name}/1/model.onnx" in written
    models = load_repository(repo)
    # The Darknet original is the same network as yolov3-tiny: only installed when asked.
    assert set(models) == {install_default.DEFAULT_MODEL, install_default.ONNX_MODEL}
    default = models[install_default.DEFAULT_MODEL]
    assert default.labels == COCO_LABELS
    assert default.parameters["output_layout"] == "yolox"
    assert default.max_batch_size == 1
    assert install_default.sha256_of(repo / DEFAULT.name / "1" / "model.onnx") == DEFAULT.sha256
    assert install_default.install_default_models(repo, cache=SHARED_MODELS) == []


def test_download_is_checked_against_its_sha256(tmp_path: Path, cached_default: Path) -> None:
    empty_cache = tmp_path / "no-cache"
    entry = dataclasses.replace(DEFAULT, url=cached_default.as_uri())
    target = tmp_path / "model.onnx"
    assert install_default.fetch_model_file(entry, target, cache=empty_cache) == entry.url
    assert install_default.sha256_of(target) == DEFAULT.sha256

    wrong = dataclasses.replace(entry, sha256="0" * 64)
    with pytest.raises(install_default.DefaultModelsError, match="expected 0000"):
        install_default.fetch_model_file(wrong, tmp_path / "bad.onnx", cache=empty_cache)
    assert not (tmp_path / "bad.onnx").exists()


def test_a_corrupt_cache_file_is_not_used(tmp_path: Path, cached_default: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / DEFAULT.filename).write_bytes(cached_default.read_bytes()[:1000])
    offline = dataclasses.replace(DEFAULT, url=(tmp_path / "nowhere.onnx").as_uri())
    with pytest.raises(install_default.DefaultModelsError, match="cannot download") as err:
        install_default.install_catalogue_model(tmp_path / "repo", offline, cache=cache)
    assert DEFAULT.sha256 in str(err.value)  # says which file to put where
    assert not list((tmp_path / "repo").rglob("*.onnx"))  # no half model left to load later
    assert not list((tmp_path / "repo").rglob(".*partial"))


def test_batchless_export_gets_a_batch_dimension(tmp_path: Path) -> None:
    entry = CATALOGUE["nanodet-m-320"]
    if not (SHARED_MODELS / entry.filename).is_file():
        pytest.skip(f"{SHARED_MODELS / entry.filename} is absent")
    install_default.install_catalogue_model(tmp_path, entry, cache=SHARED_MODELS)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    fixed = ort.InferenceSession(str(tmp_path / entry.name / "1" / "model.onnx"), options)
    original = ort.InferenceSession(str(SHARED_MODELS / entry.filename), options)
    assert [(o.name, o.shape) for o in fixed.get_outputs()] == [
        (name, [1, *dims]) for name, dims in entry.outputs
    ]
    blob = np.random.default_rng(0).normal(size=(1, 3, 320, 320)).astype(np.float32)
    for ours, theirs in zip(
        fixed.run(None, {"image": blob}), original.run(None, {"image": blob}), strict=True
    ):
        np.testing.assert_array_equal(ours[0], theirs)


def test_unknown_model_names_the_catalogue(tmp_path: Path) -> None:
    with pytest.raises(install_default.DefaultModelsError, match="yolox-nano"):
        install_default.install_default_models(tmp_path, models=["yolov8n"])


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(install_default.CACHE_ENV, raising=False)
    assert install_default.cache_dir() == install_default.DEFAULT_CACHE_DIR
    monkeypatch.setenv(install_default.CACHE_ENV, str(tmp_path))
    assert install_default.cache_dir() == tmp_path
    shutil.rmtree(tmp_path)
