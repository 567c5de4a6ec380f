"""Trainer: config loading, learning on a tiny synthetic set for each loss, logs, resume, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ddp_worker import SyntheticPatterns, tiny_config
from retrieval.config import ConfigError, TrainConfig
from retrieval.models import CheckpointError, Embedder, load_checkpoint, load_embedder
from retrieval.train import train


pytestmark = pytest.mark.usefixtures("one_thread")


def read_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]


def leave_one_out_recall(dataset: SyntheticPatterns) -> callable:
    """val_fn: fraction of items whose nearest other item has the same label."""
    def val_fn(model: Embedder) -> dict[str, float]:
        embeddings = model(dataset.images)
        distances = torch.cdist(embeddings, embeddings).fill_diagonal_(float("inf"))
        nearest = distances.argmin(dim=1).numpy()
        return {"recall@1": float(np.mean(dataset.labels[nearest] == dataset.labels))}
    return val_fn


def test_config_yaml_overrides_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"model": {"variant": "resnet18", "embed_dim": 256},
                                    "loss": {"name": "contrastive"}, "optim": {"lr": 0.01}}))
    config = TrainConfig.from_yaml(path, ["loss.margin=0.3", "optim.steps=5", "model.embed_dim=null",
                                          "optim.lr=1", "amp=off", "data.num_workers=0"])
    assert config.model.variant == "resnet18" and config.model.embed_dim is None
    assert config.loss.name == "contrastive" and config.loss.margin == 0.3
    assert config.optim.steps == 5 and config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.amp == "off" and config.data.num_workers == 0
    assert TrainConfig.from_dict(config.to_dict()) == config
    config.save_yaml(tmp_path / "saved.yaml")
    assert TrainConfig.from_yaml(tmp_path / "saved.yaml") == config


@pytest.mark.parametrize("overrides, message", [
    (["loss.margn=0.3"], "unknown config key loss.margn .*did you mean loss.margin"),
    (["loss.name=arcface"], "loss.name must be one of triplet, contrastive, classifier"),
    (["loss.miner=semi"], "loss.miner must be one of"),
    (["optim.lr=fast"], "optim.lr must be float"),
    (["data.batch_size=30", "data.m_per_class=4"], "must divide data.batch_size"),
    (["data.m_per_class=1"], "m_per_class must be >= 2"),
    (["optim.steps"], "not of the form key=value"),
    (["loss=3"], "loss must be a mapping"),
])
def test_bad_config_values_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({}, overrides)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config .*nope.yaml"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("loss", ["triplet", "contrastive", "classifier"])
def test_training_lowers_the_loss_and_separates_classes(tmp_path: Path, loss: str) -> None:
    dataset = SyntheticPatterns()
    out_dir = tmp_path / loss
    config = tiny_config(str(out_dir), loss={"name": loss})
    path = train(config, dataset)

    assert path == out_dir / "last.pt"
    rows = read_log(out_dir)
    train_rows = [r for r in rows if r["event"] == "train"]
    assert [r["step"] for r in train_rows] == [5, 10, 15, 20, 25, 30]
    first, last = train_rows[0], train_rows[-1]
    assert last["loss"] < 0.9 * first["loss"]
    assert last["pos_dist"] < last["neg_dist"] - 0.2  # same-class embeddings have drawn together
    for row in train_rows:
        assert row["img_per_s"] > 0 and 0.0 <= row["data_wait_frac"] <= 1.0
        assert ("active_frac" in row) == (loss != "classifier")
    if loss != "classifier":
        assert all(0.0 <= r["active_frac"] <= 1.0 and r["mined_per_step"] > 0 for r in train_rows)
    if loss == "triplet":  # batch-hard triplets stop violating the margin as classes separate
        assert first["active_frac"] > 0.9 and last["active_frac"] < 0.5
    end = rows[-1]
    assert end["event"] == "end" and end["step"] == 30 and end["images"] == 30 * 24
    assert end["data_wait_s"] >= 0 and end["compute_s"] > 0

    model = load_embedder(path)
    assert model.config["embed_dim"] == 32
    saved = yaml.safe_load((out_dir / "last.yaml").read_text())
    assert saved["train"]["loss"]["name"] == loss and saved["step"] == 30
    assert TrainConfig.from_yaml(out_dir / "config.yaml") == config


def test_multi_similarity_miner_with_cosine_similarity_trains(tmp_path: Path) -> None:
    config = tiny_config(str(tmp_path), loss={"name": "triplet", "miner": "multi_similarity", "distance": "cosine"},
                         optim={"steps": 20})
    train(config, SyntheticPatterns(noise=0.1))
    rows = [r for r in read_log(tmp_path) if r["event"] == "train"]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["pos_dist"] < rows[-1]["neg_dist"] - 0.5


def test_mixed_precision_path_runs(tmp_path: Path) -> None:
    """amp=on autocasts the backbone (bfloat16 on CPU) while the loss stays float32."""
    train(tiny_config(str(tmp_path), amp="on", optim={"steps": 4}, log_every=2), SyntheticPatterns())
    rows = [r for r in read_log(tmp_path) if r["event"] == "train"]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    assert load_embedder(tmp_path / "last.pt").config["embed_dim"] == 32


def test_validation_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    dataset = SyntheticPatterns()
    config = tiny_config(str(tmp_path), optim={"steps": 20}, val_every=10, data={"num_workers": 1})
    path = train(config, dataset, val_fn=leave_one_out_recall(dataset))

    assert path == tmp_path / "best.pt"
    val_rows = [r for r in read_log(tmp_path) if r["event"] == "val"]
    assert [r["step"] for r in val_rows] == [10, 20]
    best = max(val_rows, key=lambda r: r["recall@1"])
    checkpoint = load_checkpoint(path)
    assert checkpoint["extra"]["metrics"]["recall@1"] == best["recall@1"] == checkpoint["extra"]["best_score"]
    assert checkpoint["train_state"] is None  # best.pt is for inference; last.pt carries the resume state
    assert best["recall@1"] > 0.5  # 6 classes: chance is about 1/6
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["metrics"]["recall@1"] == best["recall@1"]


def test_missing_val_metric_is_named(tmp_path: Path) -> None:
    config = tiny_config(str(tmp_path), optim={"steps": 2}, val_metric="map@5")
    with pytest.raises(ConfigError, match="val_metric 'map@5' is not among .*recall@1"):
        train(config, SyntheticPatterns(), val_fn=lambda model: {"recall@1": 0.0})


def test_resume_continues_step_count_and_optimizer(tmp_path: Path) -> None:
    dataset = SyntheticPatterns()
    train(tiny_config(str(tmp_path), optim={"steps": 6}, checkpoint_every=3, log_every=3), dataset)
    first = load_checkpoint(tmp_path / "last.pt")
    assert first["extra"]["step"] == 6 and first["train_state"]["step"] == 6

    resumed = tiny_config(str(tmp_path), optim={"steps": 6}, checkpoint_every=3, log_every=3, resume=True)
    train(resumed, dataset)  # already finished: nothing to do, nothing changes
    assert load_checkpoint(tmp_path / "last.pt")["fingerprint"] == first["fingerprint"]

    longer = tiny_config(str(tmp_path), optim={"steps": 9}, checkpoint_every=3, log_every=3, resume=True)
    train(longer, dataset)
    rows = read_log(tmp_path)
    resumes = [r for r in rows if r["event"] == "resume"]
    assert [r["step"] for r in resumes] == [6, 6]
    assert [r["step"] for r in rows if r["event"] == "train"] == [3, 6, 9]
    final = load_checkpoint(tmp_path / "last.pt")
    assert final["train_state"]["step"] == 9
    optimizer_steps = final["train_state"]["optimizer"]["state"][0]["step"]
    assert float(optimizer_steps) == 9  # AdamW moments carried over, not restarted


def test_resume_without_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found: .*last.pt"):
        train(tiny_config(str(tmp_path), resume=True), SyntheticPatterns())


def test_datasets_the_sampler_cannot_use_are_refused(tmp_path: Path) -> None:
    class Unlabelled(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int):
            return torch.zeros(1, 32, 32), 0

    with pytest.raises(ConfigError, match="Unlabelled has no `labels` attribute"):
        train(tiny_config(str(tmp_path)), Unlabelled())
    with pytest.raises(ConfigError, match="3 classes but a batch of 24 with m_per_class=4 needs 6"):
        train(tiny_config(str(tmp_path)), SyntheticPatterns(n_classes=3))
