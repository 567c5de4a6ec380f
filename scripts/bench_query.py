#!/usr/bin/env python3
"""Embedding throughput and single-query latency against a 10,000-item index.

    python scripts/bench_query.py --model retrieval/weights/default.pt [--items 10000] [--queries 50]

Embedding throughput: images/s of `embed_arrays` on 64..512 px print crops (batch 128).
Query latency: median wall time of one `query_index` call (read PNG, embed, search) against a flat
index of --items random unit vectors of the model's dimension (the search cost does not depend on
what the vectors are).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from datagen.prints import degrade_print
from index import EmbeddingIndex
from retrieval.embed import embed_arrays
from retrieval.pipeline import load_model, query_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--index-type", default="flat", choices=["flat", "ivf", "hnsw"])
    args = parser.parse_args()

    model, _ = load_model(args.model)
    rng = np.random.default_rng(0)
    ink = np.zeros((128, 128), np.float32)
    ink[20:108, 60:68] = ink[40:48, 20:108] = 1.0
    images = [degrade_print(ink, i, 1.0, out_size=512) for i in range(512)]
    embed_arrays(model, images[:128])  # warm-up
    start = time.perf_counter()
    embed_arrays(model, images)
    seconds = time.perf_counter() - start
    print(f"embedding throughput: {len(images) / seconds:.0f} images/s (512 px crops, batch 128)")

    vectors = rng.standard_normal((args.items, model.embed_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [{"id": f"{i}.stl", "label": "", "source": ""} for i in range(args.items)]
    index = EmbeddingIndex.build(vectors, items, model=model.fingerprint(), index_type=args.index_type)
    with tempfile.TemporaryDirectory() as tmp:
        query = Path(tmp) / "q.png"
        Image.fromarray(images[0]).save(query)
        query_index(index, model, [query], k=5)  # warm-up
        latencies = []
        for _ in range(args.queries):
            start = time.perf_counter()
            query_index(index, model, [query], k=5)
            latencies.append(time.perf_counter() - start)
    print(f"query latency (1 image, {args.items} items, {args.index_type}): median "
          f"{1000 * statistics.median(latencies):.1f} ms, p90 {1000 * sorted(latencies)[int(0.9 * len(latencies))]:.1f} ms")


if __name__ == "__main__":
    main()
