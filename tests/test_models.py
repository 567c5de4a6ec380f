"""Embedder registry, forward shapes, checkpoints and preprocessing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from retrieval import models
from retrieval.config import ConfigError
from retrieval.models import (CheckpointError, create_embedder, list_variants, load_embedder, preprocess,
                              register_variant, variant_defaults)

pytestmark = pytest.mark.usefixtures("one_thread")


REQUIRED_VARIANTS = {"efficientnet_b0", "caformer_s18", "resnet18", "resnet10t"}


def test_required_variants_are_registered_with_defaults() -> None:
    assert REQUIRED_VARIANTS <= set(list_variants())
    for name in list_variants():
        defaults = variant_defaults(name)
        assert defaults["input_size"] >= 32 and defaults["embed_dim"] > 0 and defaults["std"] > 0


@pytest.mark.parametrize("name", sorted(REQUIRED_VARIANTS))
def test_each_variant_embeds_grayscale_batches(name: str) -> None:
    torch.manual_seed(0)
    model = create_embedder(name, embed_dim=16, input_size=32).eval()
    assert model.config["in_chans"] == 1 and model.config["backbone"] == name
    with torch.no_grad():
        same_size = model(torch.rand(3, 1, 32, 32))
        resized = model(torch.rand(3, 1, 45, 45))  # other sizes are resized inside
    assert same_size.shape == resized.shape == (3, 16)
    assert torch.isfinite(same_size).all()
    assert torch.allclose(same_size.norm(dim=1), torch.ones(3), atol=1e-5)
    # Untrained BatchNorm running statistics can flatten eval outputs; batch statistics cannot.
    embeddings = model.train()(torch.rand(3, 1, 32, 32))
    assert not torch.allclose(embeddings[0], embeddings[1], atol=1e-3)
    embeddings.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_normalize_off_leaves_free_norms() -> None:
    model = create_embedder("resnet10t", embed_dim=8, input_size=32, normalize=False).eval()
    with torch.no_grad():
        norms = model(torch.rand(4, 1, 32, 32)).norm(dim=1)
    assert not torch.allclose(norms, torch.ones(4), atol=1e-3)


def test_pretrained_and_unknown_variants_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be downloaded"):
        create_embedder("resnet18", pretrained=True)
    with pytest.raises(ConfigError, match="unknown model variant 'resnet9000'.*resnet18"):
        create_embedder("resnet9000")
    with pytest.raises(ConfigError, match="pool"):
        create_embedder("resnet10t", pool="median")


def test_registered_variant_defaults_drive_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_VARIANTS", dict(models._VARIANTS))  # registration undone afterwards
    register_variant("lcnet_tiny_test", "lcnet_050", input_size=40, embed_dim=24, mean=0.8, std=0.2, pool="avg")
    model = create_embedder("lcnet_tiny_test")
    assert "lcnet_tiny_test" in list_variants()
    assert (model.input_size, model.embed_dim, model.config["mean"], model.config["pool"]) == (40, 24, 0.8, "avg")
    assert model.config["timm_name"] == "lcnet_050"


def test_save_load_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    model = create_embedder("resnet10t", embed_dim=16, input_size=32)
    model.train()
    model(torch.rand(8, 1, 32, 32))  # moves BatchNorm running statistics off their initial values
    model.eval()
    images = torch.rand(5, 1, 32, 32)
    path = model.save(tmp_path / "ckpt" / "model.pt", extra={"step": 7, "train": {"loss": "triplet"}})

    loaded = load_embedder(path)
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))
    assert loaded.fingerprint() == model.fingerprint()
    assert loaded.config == model.config and not loaded.training

    summary = yaml.safe_load(path.with_suffix(".yaml").read_text())
    assert summary["model"]["backbone"] == "resnet10t" and summary["model"]["input_size"] == 32
    assert summary["fingerprint"] == model.fingerprint() and summary["step"] == 7

    with torch.no_grad():
        next(loaded.parameters()).add_(1e-3)
    assert loaded.fingerprint() != model.fingerprint()


def test_missing_or_corrupt_checkpoints_raise(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found: .*absent.pt"):
        load_embedder(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*garbage.pt"):
        load_embedder(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a sinonom-embedder"):
        load_embedder(foreign)
    model = create_embedder("resnet10t", embed_dim=8, input_size=32)
    path = model.save(tmp_path / "ok.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["embed_dim"] = 9
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_embedder(path)


def test_preprocess_accepts_pil_uint8_and_float_images() -> None:
    white_rgb = Image.new("RGB", (50, 40), (255, 255, 255))
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    ink = np.zeros((20, 20), dtype=np.float32)
    ink[5:15, 5:15] = 1.0
    batch = preprocess([white_rgb, ramp, ink], input_size=32)
    assert batch.shape == (3, 1, 32, 32) and batch.dtype == torch.float32
    assert torch.allclose(batch[0], torch.ones(1, 32, 32))
    assert batch[1, 0, :, 0].max() < 0.1 and batch[1, 0, :, -1].min() > 0.9  # dark left, light right
    assert batch[2, 0, 16, 16] == pytest.approx(1.0) and batch[2, 0, 0, 0] == pytest.approx(0.0)
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0

    model = create_embedder("resnet10t", embed_dim=8, input_size=24)
    assert model.preprocess([white_rgb]).shape == (1, 1, 24, 24)


def test_preprocess_rejects_unusable_arrays() -> None:
    with pytest.raises(ConfigError, match="dtype int64"):
        preprocess([np.zeros((8, 8), dtype=np.int64)], input_size=16)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        preprocess([np.full((8, 8), 3.0, dtype=np.float32)], input_size=16)
