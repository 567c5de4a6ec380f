"""Sub-commands of the engine: train, build-index, query, benchmark, demo (registered by retrieval.cli)."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

RAW = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    """Add the engine's sub-commands to the top-level parser."""
    p = sub.add_parser("train", formatter_class=RAW, help="train an embedding model (triplet + hard mining by default)",
                       description="Train an embedding model on a cached training set (sinonom datagen "
                                   "training-set). Resolved config is saved beside every checkpoint.",
                       epilog="examples:\n  sinonom train --config configs/default.yaml\n"
                              "  sinonom train --config configs/default.yaml optim.steps=200 loss.name=contrastive\n"
                              "  torchrun --nproc_per_node=2 -m retrieval.cli train --config configs/default.yaml")
    p.add_argument("--config", type=Path, help="YAML config (see configs/); flags and KEY=VALUE override it")
    p.add_argument("--train-set", help="cached training set (.npz)")
    p.add_argument("--val-set", help="cached validation set (.npz): prints vs blocks, MRR@5 each validation")
    p.add_argument("--out", help="output folder for checkpoints and logs")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. optim.lr=3e-4")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("build-index", formatter_class=RAW, help="embed meshes, images or font templates into an index",
                       description="Embed a collection and save a FAISS index folder (with the model and the "
                                   "resolved config inside, so queries need only the folder).",
                       epilog="examples:\n  sinonom build-index --meshes data/val/database --out indexes/blocks\n"
                              "  sinonom build-index --images crops/ --out indexes/crops\n"
                              "  sinonom build-index --fonts hanazono --fonts babelstone --chars nom --out indexes/nom\n"
                              "  sinonom build-index --meshes more_blocks/ --out indexes/blocks --add")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--meshes", type=Path, help="folder (or file) of .stl/.obj/.ply blocks")
    src.add_argument("--images", type=Path, help="folder (or file) of images; a sub-folder name is the label")
    src.add_argument("--fonts", action="append", metavar="NAME_OR_PATH",
                     help="render character templates from these faces (repeatable); use with --chars")
    p.add_argument("--chars", default="nom", help="with --fonts: charset name, file or literal characters")
    p.add_argument("--model", type=Path, help="checkpoint (default: the shipped model)")
    p.add_argument("--out", type=Path, required=True, help="index folder to write")
    p.add_argument("--views", type=int, default=4, help="depth views per mesh (their embeddings are averaged)")
    p.add_argument("--index-type", choices=["flat", "ivf", "hnsw"], default="flat",
                   help="flat = exact (default); ivf / hnsw = approximate, for large collections")
    p.add_argument("--add", action="store_true", help="add to an existing index instead of replacing it")
    p.add_argument("--workers", type=int, default=2, help="processes reading / rendering inputs")
    p.set_defaults(func=_cmd_build_index)

    p = sub.add_parser("query", formatter_class=RAW, help="find the top-k matches of query images",
                       description="Embed query images with the index's model and print their top-k matches.",
                       epilog="examples:\n  sinonom query q.png --index indexes/blocks -k 5\n"
                              "  sinonom query data/val/queries --index indexes/blocks --csv > predictions.csv\n"
                              "  sinonom query q1.png q2.png --index indexes/blocks --grid results.png")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders")
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("-k", type=int, default=5, help="results per query (default 5)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON: one object per query with ids, labels, distances")
    fmt.add_argument("--csv", action="store_true", help='course format: query,"a.stl,b.stl,..."')
    p.add_argument("--grid", type=Path, help="also draw each query beside its results into this PNG")
    p.add_argument("--model", type=Path, help="query with this checkpoint (refused unless it built the index)")
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("benchmark", formatter_class=RAW, help="MRR@5 and recall@k on a course-format folder",
                       description="Score a model (and baselines) on DATASET/{database,queries,labels.csv}: "
                                   "predictions CSV, MRR@5, recall@1/5/10, stage timings, worst-query grid.",
                       epilog="examples:\n  sinonom benchmark data/test --out runs/bench\n"
                              "  sinonom benchmark data/test --model runs/train/best.pt --baselines")
    add_benchmark_arguments(p)
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("export", formatter_class=RAW, help="strip a checkpoint for shipping (weights only, float16)",
                       description="Write a checkpoint without training state, weights in float16 (half the "
                                   "size; embeddings change by ~1e-3). This is how the shipped default is made.",
                       epilog="example:\n  sinonom export runs/default/best.pt --out retrieval/weights/default.pt")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--full", action="store_true", help="keep float32 weights")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("demo", formatter_class=RAW, help="the whole pipeline on a small generated set",
                       description="Generate carved blocks and their prints, build an index with the shipped "
                                   "model, query it, print MRR@5 and write a result grid.",
                       epilog="example:\n  sinonom demo --out runs/demo --chars 200")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--chars", type=int, default=200)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--model", type=Path, help="checkpoint (default: the shipped model)")
    p.set_defaults(func=_cmd_demo)

    from .read import register_read

    register_read(sub)


def add_benchmark_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by `sinonom benchmark` and scripts/benchmark_mrr.py."""
    p.add_argument("dataset", type=Path, help="folder with database/, queries/, labels.csv")
    p.add_argument("--model", type=Path, action="append",
                   help="checkpoint(s) to score (repeatable; default: the shipped model)")
    p.add_argument("--out", type=Path, default=Path("runs/benchmark"), help="where predictions and grids go")
    p.add_argument("--baselines", action="store_true", help="also score raw pixels and HOG features")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--limit", type=int, help="only the first N queries")
    p.add_argument("--workers", type=int, default=2)


def _cmd_train(args: argparse.Namespace) -> None:
    from .config import TrainConfig
    from .data import BlockImageDataset, cross_domain_validator
    from .models import variant_defaults
    from .train import train

    overrides = list(args.overrides)
    for flag, key in (("train_set", "data.train_set"), ("val_set", "data.val_set"), ("out", "out_dir")):
        if getattr(args, flag):
            overrides.append(f"{key}={getattr(args, flag)}")
    if args.resume:
        overrides.append("resume=true")
    config = TrainConfig.from_yaml(args.config, overrides) if args.config else TrainConfig.from_dict({}, overrides)
    if not config.data.train_set:
        raise ValueError("no training set: pass --train-set FILE.npz (make one with `sinonom datagen training-set`)")
    input_size = config.model.input_size or variant_defaults(config.model.variant)["input_size"]
    dataset = BlockImageDataset(config.data.train_set, input_size=input_size, train=True)
    val_fn = cross_domain_validator(config.data.val_set) if config.data.val_set else None
    print(f"best checkpoint: {train(config, dataset, val_fn)}")


def _cmd_build_index(args: argparse.Namespace) -> None:
    from .pipeline import build_index

    index = build_index(args.out, model_path=args.model, meshes=args.meshes, images=args.images,
                        fonts=args.fonts or (), chars=args.chars, views=args.views, index_type=args.index_type,
                        workers=args.workers, add=args.add)
    print(f"{len(index)} items ({index.index_type}, dim {index.dim}, model {index.model}) -> {args.out}")


def _cmd_query(args: argparse.Namespace) -> None:
    from datagen.files import list_images

    from .pipeline import draw_results, open_index, query_index

    images = list_images(args.images)
    index, model = open_index(args.index, args.model)
    results = query_index(index, model, images, k=args.k)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2, ensure_ascii=False))
    elif args.csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["query", "label"])
        writer.writerows([Path(r.query).name, ",".join(r.ids)] for r in results)
        sys.stdout.write(out.getvalue())
    else:
        print(f"{'query':24s} {'rank':>4s}  {'id':28s} {'label':6s} {'distance':>8s}")
        for r in results:
            for rank, (item, label, dist) in enumerate(zip(r.ids, r.labels, r.distances), 1):
                print(f"{Path(r.query).name[:24]:24s} {rank:4d}  {item[:28]:28s} {label or '-':6s} {dist:8.4f}")
    if args.grid:
        print(f"grid: {draw_results(results, index, args.grid)}", file=sys.stderr)


def run_benchmarks(args: argparse.Namespace) -> list[dict]:
    """Load the set once, score every requested method on it, print the table; returns the results."""
    from .benchmark import HOGFeaturizer, ModelFeaturizer, PixelFeaturizer, format_table, load_course_set, run_benchmark
    from .pipeline import load_model

    data = load_course_set(args.dataset, views=args.views, workers=args.workers, limit=args.limit)
    methods = []
    if args.baselines:
        methods += [PixelFeaturizer(), HOGFeaturizer()]
    for path in args.model or [None]:
        model, model_path = load_model(path)
        methods.append(ModelFeaturizer(model, name=f"{model_path.parent.name}/{model_path.name}"))
    results = []
    for n, method in enumerate(methods):
        out = args.out / f"{n:02d}_{method.name.replace('/', '_').replace(' ', '_')}"
        result = run_benchmark(data, method, out_dir=out, k=args.k)
        results.append(result)
        print(f"{method.name}: MRR@{args.k} {result[f'mrr@{args.k}']:.4f}  timings {result['timings_s']}  "
              f"-> {out}", file=sys.stderr)
    print(format_table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _cmd_benchmark(args: argparse.Namespace) -> None:
    run_benchmarks(args)


def _cmd_export(args: argparse.Namespace) -> None:
    from .models import embedder_from_checkpoint, load_checkpoint

    payload = load_checkpoint(args.checkpoint)
    path = embedder_from_checkpoint(payload, args.checkpoint).save(
        args.out, extra={**payload["extra"], "exported_from": str(args.checkpoint)}, half=not args.full)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


def _cmd_demo(args: argparse.Namespace) -> None:
    from datagen.retrieval_set import RetrievalSetConfig, generate_retrieval_set
    from eval.course import read_labels, score_predictions

    from datagen.files import list_images

    from .pipeline import build_index, draw_results, open_index, query_index

    data_dir, index_dir = args.out / "set", args.out / "index"
    summary = generate_retrieval_set(RetrievalSetConfig(chars=args.chars, seed=args.seed, resolution=192), data_dir)
    print(f"[1/3] generated {summary['blocks']} carved blocks and {summary['queries']} prints in "
          f"{summary['seconds']} s -> {data_dir}")
    build_index(index_dir, model_path=args.model, meshes=data_dir / "database")
    index, model = open_index(index_dir)
    print(f"[2/3] indexed {len(index)} blocks with model {index.model} -> {index_dir}")
    results = query_index(index, model, list_images([data_dir / "queries"]), k=5)
    labels = read_labels(data_dir / "labels.csv")
    scores = score_predictions({Path(r.query).name: r.ids for r in results}, labels)
    truths = [labels[Path(r.query).name][0] for r in results]
    grid = draw_results(results[:8], index, args.out / "results.png", truths=truths[:8])
    print(f"[3/3] queried {len(results)} prints: MRR@5 {scores['mrr@5']:.4f}, recall@1 {scores['recall@1']:.4f}, "
          f"recall@5 {scores['recall@5']:.4f}\n      result grid (true block framed green): {grid}")
