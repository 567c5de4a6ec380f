"""Metric-learning trainer: any labelled image Dataset in, an Embedder checkpoint out.

The dataset returns `(image float tensor (C, H, W) in [0, 1], int label)` and exposes `labels`
(one per item) for the M-per-class sampler. Losses, miners, distances and the sampler are
pytorch-metric-learning parts composed by name from `TrainConfig`. Runs single-process or under
`torchrun` (DistributedDataParallel; gloo on CPU, nccl on GPU), where each rank draws its own
M-per-class batches with a rank-dependent seed and only rank 0 logs, validates and saves.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_metric_learning import distances, losses, miners, reducers, samplers
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from retrieval.config import ConfigError, LossConfig, TrainConfig
from retrieval.models import CheckpointError, Embedder, create_embedder, load_checkpoint, tensors_digest

ValFn = Callable[[Embedder], dict[str, float]]


class MetricObjective(nn.Module):
    """PML loss (+ miner) whose per-triplet / per-pair losses are reduced here, so the fraction of
    mined tuples that still violate the margin ("active") is known exactly.

    The reduction is PML's default for these losses (mean over the non-zero losses, summed over the
    positive- and negative-pair parts). The classifier loss ignores the miner and the distance.
    """

    def __init__(self, config: LossConfig, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.name = config.name
        cosine = config.distance == "cosine"
        distance = distances.CosineSimilarity() if cosine else distances.LpDistance(normalize_embeddings=True)
        keep_elements = reducers.DoNothingReducer()
        if config.name == "triplet":
            self.loss = losses.TripletMarginLoss(margin=config.margin, distance=distance, reducer=keep_elements)
        elif config.name == "contrastive":
            pos_margin = config.pos_margin if config.pos_margin is not None else (1.0 if cosine else 0.0)
            neg_margin = config.neg_margin if config.neg_margin is not None else (0.0 if cosine else 1.0)
            self.loss = losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin, distance=distance,
                                               reducer=keep_elements)
        else:
            self.loss = losses.NormalizedSoftmaxLoss(num_classes, embed_dim, temperature=config.temperature,
                                                     reducer=keep_elements)
        self.miner: nn.Module | None = None
        if config.name != "classifier" and config.miner == "batch_hard":
            self.miner = miners.BatchHardMiner(distance=distance)
        elif config.name != "classifier" and config.miner == "multi_similarity":
            self.miner = miners.MultiSimilarityMiner(epsilon=config.ms_epsilon, distance=distance)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss and detached counts: `active` tuples with positive loss out of `mined`."""
        indices = self.miner(embeddings, labels) if self.miner is not None else None
        parts = self.loss(embeddings, labels, indices)
        total = embeddings.sum() * 0.0  # keeps the graph when nothing was mined
        active = torch.zeros((), device=embeddings.device)
        mined = torch.zeros((), device=embeddings.device)
        for part in parts.values():
            element_losses = part["losses"]
            if not torch.is_tensor(element_losses) or element_losses.ndim == 0:
                continue  # PML's "no tuples" placeholder
            positive = (element_losses > 0).sum()
            total = total + element_losses.sum() / positive.clamp(min=1)
            active = active + positive.detach()
            mined = mined + element_losses.numel()
        return total, {"active": active, "mined": mined}


class TrainStep(nn.Module):
    """Embedder + objective in one module, so DDP synchronises the classifier weights too."""

    def __init__(self, embedder: Embedder, objective: MetricObjective, amp: bool) -> None:
        super().__init__()
        self.embedder = embedder
        self.objective = objective
        self.amp = amp

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        with torch.autocast(images.device.type, enabled=self.amp):
            embeddings = self.embedder(images)
        loss, counts = self.objective(embeddings.float(), labels)
        return loss, embeddings.detach().float(), counts


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def train(config: TrainConfig, dataset: Dataset, val_fn: ValFn | None = None) -> Path:
    """Train an Embedder on `dataset`; return best.pt (when val_fn is given) or last.pt.

    val_fn(embedder) -> metrics dict is called on rank 0 with the model in eval mode; the key
    `config.val_metric` (higher is better) selects best.pt. Writes into config.out_dir:
    config.yaml, train_log.jsonl, last.pt (+ training state for resume), best.pt, and a .yaml
    summary beside each checkpoint.
    """
    config.validate()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    ctx = _init_distributed(config)
    try:
        return _Trainer(config, dataset, val_fn, ctx).run()
    finally:
        if ctx.initialised_here:
            dist.destroy_process_group()


class _Trainer:
    def __init__(self, config: TrainConfig, dataset: Dataset, val_fn: ValFn | None, ctx: _Dist) -> None:
        self.config, self.dataset, self.val_fn, self.ctx = config, dataset, val_fn, ctx
        self.out_dir = Path(config.out_dir)
        self.device = _pick_device(config.device, ctx.local_rank)
        self.amp = config.amp == "on" or (config.amp == "auto" and self.device.type == "cuda")
        self.labels = _dataset_labels(dataset)
        _check_batching(config, self.labels)

        _seed_everything(config.seed)  # identical initial weights on every rank
        self.embedder = create_embedder(config.model.variant, embed_dim=config.model.embed_dim,
                                        input_size=config.model.input_size, normalize=config.model.normalize,
                                        pool=config.model.pool, drop_path_rate=config.model.drop_path_rate)
        objective = MetricObjective(config.loss, self.embedder.embed_dim, int(self.labels.max()) + 1)
        self.step_module = TrainStep(self.embedder, objective, self.amp).to(self.device)
        self.objective = objective
        self.module: nn.Module = self.step_module
        if ctx.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = DistributedDataParallel(self.step_module, device_ids=device_ids)
        _seed_everything(config.seed + 1000 * ctx.rank)  # rank-dependent batches and augmentation

        self.steps_per_epoch = max(1, len(dataset) // (config.data.batch_size * ctx.world_size))
        self.total_steps = config.optim.steps or config.optim.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(_param_groups(self.step_module, config.optim.weight_decay),
                                           lr=config.optim.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _warmup_cosine(self.total_steps, config.optim.warmup_frac, config.optim.min_lr_frac))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.step = 0
        self.best_score = -math.inf
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ loop
    def run(self) -> Path:
        cfg = self.config
        if cfg.resume:
            self._resume()
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            cfg.save_yaml(self.out_dir / "config.yaml")
        loader = self._loader()
        batches = self._batches(loader)
        window = _Window()
        totals = _Window()
        progress = tqdm(total=self.total_steps, initial=self.step, disable=not self.ctx.is_main,
                        desc="train", dynamic_ncols=True)
        self.module.train()
        while self.step < self.total_steps:
            started = time.perf_counter()
            images, labels = next(batches)
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            loaded = time.perf_counter()

            loss, embeddings, counts = self.module(images, labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            pos_dist, neg_dist = _mean_pair_distances(embeddings, labels)
            window.add(loss=loss.detach(), pos_dist=pos_dist, neg_dist=neg_dist, **counts)
            if self.device.type == "cuda" and self.step % cfg.log_every == 0:
                torch.cuda.synchronize(self.device)
            finished = time.perf_counter()
            for acc in (window, totals):
                acc.time(data=loaded - started, compute=finished - loaded, images=len(images))
            progress.update(1)

            if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                row = self._train_row(window)
                if not math.isfinite(row["loss"]):
                    raise FloatingPointError(f"training loss is {row['loss']} at step {self.step}; "
                                             "lower optim.lr or turn amp off")
                progress.set_postfix(loss=f"{row['loss']:.4f}", active=row.get("active_frac", "-"),
                                     img_s=f"{row['img_per_s']:.0f}", refresh=False)
                self._log(row)
                window = _Window()
            if self._due(cfg.val_every) and self.val_fn is not None:
                self._validate()
            if self._due(cfg.checkpoint_every):
                self._save_last()
        progress.close()
        checksums = [_param_checksum(self.step_module)]
        if self.ctx.world_size > 1:  # DDP keeps parameters identical on every rank: prove it in the log
            checksums = [None] * self.ctx.world_size
            dist.all_gather_object(checksums, _param_checksum(self.step_module))
        self._log({"event": "end", "step": self.step, "data_wait_s": round(totals.data, 3),
                   "compute_s": round(totals.compute, 3), "data_wait_frac": totals.data_wait_frac(),
                   "images": totals.images * self.ctx.world_size, "best_score": self._best_or_none(),
                   "param_checksums": checksums})
        best = self.out_dir / "best.pt"
        return best if self.val_fn is not None and best.exists() else self.out_dir / "last.pt"

    def _due(self, every: int) -> bool:
        """Whether an every-N-steps action (0: once per epoch) is due now; always due at the end."""
        period = every or self.steps_per_epoch
        return self.step % period == 0 or self.step == self.total_steps

    def _loader(self) -> DataLoader:
        cfg = self.config.data
        sampler = samplers.MPerClassSampler(self.labels, cfg.m_per_class, batch_size=cfg.batch_size,
                                            length_before_new_iter=self.steps_per_epoch * cfg.batch_size)
        return DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                          num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                          pin_memory=self.device.type == "cuda")

    def _batches(self, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from loader

    # --------------------------------------------------------------- logging
    def _train_row(self, window: _Window) -> dict[str, Any]:
        steps = max(window.steps, 1)
        row: dict[str, Any] = {
            "event": "train", "step": self.step, "epoch": round(self.step / self.steps_per_epoch, 3),
            "loss": window.mean("loss"), "pos_dist": window.mean("pos_dist"), "neg_dist": window.mean("neg_dist"),
            "lr": self.scheduler.get_last_lr()[0],
            "img_per_s": window.images * self.ctx.world_size / max(window.data + window.compute, 1e-9),
            "data_wait_frac": window.data_wait_frac(), "data_wait_ms": 1000 * window.data / steps,
            "compute_ms": 1000 * window.compute / steps,
        }
        if self.config.loss.name != "classifier":
            mined = window.total("mined")
            row["mined_per_step"] = mined / steps
            row["active_frac"] = round(window.total("active") / mined, 4) if mined else 0.0
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}

    def _log(self, row: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"time": round(time.time(), 3), **row}) + "\n")

    # ----------------------------------------------------------- validation
    def _validate(self) -> None:
        if self.ctx.is_main:
            self.embedder.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.val_fn(self.embedder).items()}
            self.embedder.train()
            key = self.config.val_metric
            if key not in metrics:
                raise ConfigError(f"val_metric {key!r} is not among the validation results: {', '.join(metrics)}")
            self.last_metrics = metrics
            improved = metrics[key] > self.best_score
            self._log({"event": "val", "step": self.step, **metrics, "best": improved})
            if improved:
                self.best_score = metrics[key]
                self.embedder.save(self.out_dir / "best.pt", extra=self._extra())
        if self.ctx.world_size > 1:
            dist.barrier()

    # ---------------------------------------------------------- checkpoints
    def _extra(self) -> dict[str, Any]:
        return {"train": self.config.to_dict(), "step": self.step, "epoch": self.step / self.steps_per_epoch,
                "world_size": self.ctx.world_size, "metrics": self.last_metrics, "best_score": self._best_or_none()}

    def _best_or_none(self) -> float | None:
        return None if self.best_score == -math.inf else self.best_score

    def _save_last(self) -> None:
        rng_states = [_rng_state()]
        if self.ctx.world_size > 1:
            rng_states = [None] * self.ctx.world_size
            dist.all_gather_object(rng_states, _rng_state())
        if self.ctx.is_main:
            state = {"objective": self.objective.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                     "step": self.step, "best_score": self.best_score, "rng": rng_states}
            self.embedder.save(self.out_dir / "last.pt", extra=self._extra(), train_state=state)
            self._log({"event": "checkpoint", "step": self.step, "path": str(self.out_dir / "last.pt")})
        if self.ctx.world_size > 1:
            dist.barrier()

    def _resume(self) -> None:
        path = self.out_dir / "last.pt"
        payload = load_checkpoint(path, map_location=self.device)
        state = payload.get("train_state")
        if not state:
            raise CheckpointError(f"{path} holds no training state to resume from")
        try:
            self.embedder.load_state_dict(payload["state_dict"])
            self.objective.load_state_dict(state["objective"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path} was trained with another model or loss config: "
                                  f"{str(exc).splitlines()[0]}") from exc
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best_score = float(state["best_score"])
        self.last_metrics = dict(payload.get("extra", {}).get("metrics", {}))
        if len(state["rng"]) == self.ctx.world_size:
            _set_rng_state(state["rng"][self.ctx.rank])
        else:  # another world size: fresh but deterministic rank streams
            _seed_everything(self.config.seed + 1000 * self.ctx.rank + self.step)
        self._log({"event": "resume", "step": self.step, "path": str(path)})


class _Window:
    """Running sums of batch statistics and timings between two log rows."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._pending: dict[str, list[torch.Tensor]] = {}
        self.steps = 0
        self.data = 0.0
        self.compute = 0.0
        self.images = 0

    def add(self, **values: torch.Tensor) -> None:
        """Keep device tensors until read, so a GPU is not synchronised every step."""
        for key, value in values.items():
            self._pending.setdefault(key, []).append(value.detach())
        self.steps += 1

    def time(self, data: float, compute: float, images: int) -> None:
        self.data += data
        self.compute += compute
        self.images += images

    def total(self, key: str) -> float:
        for name, values in self._pending.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(torch.stack(values).sum())
        self._pending = {}
        return self._sums.get(key, 0.0)

    def mean(self, key: str) -> float:
        return self.total(key) / max(self.steps, 1)

    def data_wait_frac(self) -> float:
        return round(self.data / max(self.data + self.compute, 1e-9), 4)


# ------------------------------------------------------------------ helpers
def _init_distributed(config: TrainConfig) -> _Dist:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Dist()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return _Dist(rank, world_size, local_rank)
    use_cuda = torch.cuda.is_available() and config.device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(rank, world_size, local_rank, initialised_here=True)


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def _dataset_labels(dataset: Dataset) -> np.ndarray:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ConfigError(f"{type(dataset).__name__} has no `labels` attribute (one int label per item), "
                          "which the M-per-class sampler needs")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(dataset) or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"{type(dataset).__name__}.labels must be {len(dataset)} ints, "
                          f"got shape {labels.shape} of {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise ConfigError(f"{type(dataset).__name__}.labels must be non-negative")
    return labels


def _check_batching(config: TrainConfig, labels: np.ndarray) -> None:
    classes_per_batch = config.data.batch_size // config.data.m_per_class
    n_classes = len(np.unique(labels))
    if n_classes < classes_per_batch:
        raise ConfigError(f"the dataset has {n_classes} classes but a batch of {config.data.batch_size} with "
                          f"m_per_class={config.data.m_per_class} needs {classes_per_batch}")
    if len(labels) < config.data.batch_size:
        raise ConfigError(f"the dataset has {len(labels)} items, fewer than batch_size={config.data.batch_size}")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """RNG states in checkpoint-safe types (tensors, ints, lists) for torch.load(weights_only=True)."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norm scales and the GeM exponent (all parameters of ndim <= 1)."""
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _param_checksum(module: nn.Module) -> str:
    """Short hash of the trainable parameters (not the per-rank BatchNorm running statistics)."""
    return tensors_digest(module.named_parameters())


def _warmup_cosine(total_steps: int, warmup_frac: float, min_lr_frac: float) -> Callable[[int], float]:
    warmup = int(total_steps * warmup_frac)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total_steps - warmup, 1)
        return min_lr_frac + (1.0 - min_lr_frac) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _mean_pair_distances(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean Euclidean distance of L2-normalised embeddings over same-class and other-class pairs.

    On the unit sphere both lie in [0, 2]; a collapsed embedding shows as both near 0.
    """
    unit = F.normalize(embeddings, dim=1)
    distance = torch.cdist(unit, unit)
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    different = labels[:, None] != labels[None, :]
    return distance[same].mean(), distance[different].mean()
