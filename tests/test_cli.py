"""`sinonom` end to end on tiny data made here: every command as a user runs it, and its bad-input errors."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import TINY_DRAWN, run_cli
from retrieval.cli import main

CHARS = TINY_DRAWN[:6]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_font, tiny_font_alt):
    """A tiny retrieval set, a training set, and a model trained a few steps, all through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    fonts = ["--fonts", str(tiny_font.path), "--fonts", str(tiny_font_alt.path)]
    assert main(["datagen", "retrieval-set", "--chars", "5", "--charset", CHARS, *fonts, "--resolution", "40",
                 "--workers", "1", "--out", str(root / "set")]) == 0
    assert main(["datagen", "training-set", "--chars", "6", "--charset", CHARS, *fonts, "--resolution", "40",
                 "--size", "32", "--prints", "3", "--views", "2", "--workers", "1", "--out",
                 str(root / "train.npz")]) == 0
    assert main(["train", "--train-set", str(root / "train.npz"), "--val-set", str(root / "train.npz"),
                 "--out", str(root / "model"), "model.input_size=32", "model.embed_dim=16", "data.batch_size=8",
                 "data.m_per_class=2", "optim.steps=3", "log_every=1"]) == 0
    return {"root": root, "fonts": fonts, "model": root / "model" / "best.pt", "set": root / "set"}


def test_help_teaches_every_command(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for command in ("datagen", "train", "build-index", "query", "benchmark", "demo"):
        assert command in out
    for command in (["build-index"], ["query"], ["datagen", "retrieval-set"], ["datagen", "depth"]):
        code, out, _ = run_cli(capsys, *command, "--help")
        assert code == 0 and "example" in out


def test_charset_and_fonts_commands(capsys, tiny_font):
    assert run_cli(capsys, "datagen", "charset", CHARS, "--count")[1].strip() == "6"
    code, out, _ = run_cli(capsys, "datagen", "fonts", "--charset", CHARS, "--font", str(tiny_font.path), "--no-system")
    assert code == 0 and "SinoNom Tiny" in out and "6" in out


def test_print_block_and_depth_commands(capsys, tmp_path, tiny_font):
    code, out, _ = run_cli(capsys, "datagen", "print", CHARS[0], "--font", str(tiny_font.path), "--count", "2",
                       "--out", tmp_path / "prints")
    assert code == 0 and len(list((tmp_path / "prints").glob("*.png"))) == 2
    code, out, _ = run_cli(capsys, "datagen", "block", CHARS[0], "--font", str(tiny_font.path), "--resolution", "48",
                       "--out", tmp_path / "b.ply")
    assert code == 0 and (tmp_path / "b.ply").is_file()
    code, out, _ = run_cli(capsys, "datagen", "depth", tmp_path / "b.ply", "--out", tmp_path / "views", "--views", "3",
                       "--size", "48")
    assert code == 0 and "views/s" in out
    assert Image.open(tmp_path / "views" / "b_v2.png").size == (48, 48)


def test_build_index_query_and_grid(capsys, workspace, tmp_path):
    index = tmp_path / "index"
    code, out, err = run_cli(capsys, "build-index", "--meshes", workspace["set"] / "database", "--model",
                         workspace["model"], "--out", index, "--workers", "0")
    assert code == 0, err
    assert "10 items" in out and (index / "model.pt").is_file() and (index / "build.json").is_file()
    queries = workspace["set"] / "queries"
    code, out, err = run_cli(capsys, "query", queries / "0.png", "--index", index, "-k", "3")
    assert code == 0 and len(out.strip().splitlines()) == 1 + 3
    code, out, _ = run_cli(capsys, "query", queries, "--index", index, "-k", "5", "--json")
    answers = json.loads(out)
    assert len(answers) == 5 and all(len(a["ids"]) == 5 and a["distances"] == sorted(a["distances"]) for a in answers)
    code, out, _ = run_cli(capsys, "query", queries, "--index", index, "--csv")
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == ["query", "label"] and len(rows) == 6 and len(rows[1][1].split(",")) == 5
    code, _, err = run_cli(capsys, "query", queries / "1.png", "--index", index, "--grid", tmp_path / "g.png")
    assert code == 0 and Image.open(tmp_path / "g.png").size[0] > 128 * 5


def test_add_to_index_and_template_index(capsys, workspace, tmp_path, tiny_font, tiny_font_alt):
    index = tmp_path / "index"
    database = sorted((workspace["set"] / "database").glob("*.stl"))
    first, rest = tmp_path / "first", tmp_path / "rest"
    first.mkdir(), rest.mkdir()
    for n, path in enumerate(database):
        (first if n < 4 else rest).joinpath(path.name).write_bytes(path.read_bytes())
    assert run_cli(capsys, "build-index", "--meshes", first, "--model", workspace["model"], "--out", index,
               "--workers", "0")[0] == 0
    code, out, err = run_cli(capsys, "build-index", "--meshes", rest, "--out", index, "--add", "--workers", "0")
    assert code == 0 and "10 items" in out, err
    chars_index = tmp_path / "chars"
    code, out, err = run_cli(capsys, "build-index", "--fonts", str(tiny_font.path), "--fonts", str(tiny_font_alt.path),
                         "--chars", CHARS, "--model", workspace["model"], "--out", chars_index)
    assert code == 0 and "12 items" in out, err
    code, out, _ = run_cli(capsys, "query", workspace["set"] / "queries" / "0.png", "--index", chars_index, "--json")
    assert set(json.loads(out)[0]["labels"]) <= set(CHARS)


def test_benchmark_writes_course_predictions(capsys, workspace, tmp_path):
    code, out, err = run_cli(capsys, "benchmark", workspace["set"], "--model", workspace["model"], "--baselines",
                         "--out", tmp_path / "bench", "--workers", "1")
    assert code == 0, err
    assert "raw pixels" in out and "HOG" in out and "MRR@5" in out
    runs = sorted((tmp_path / "bench").glob("0*"))
    assert len(runs) == 3
    text = (runs[-1] / "predictions.csv").read_text().splitlines()
    assert text[0] == "query,label" and text[1].count(",") == 5 and " " not in text[1]
    assert (runs[-1] / "worst.png").is_file()
    metrics = json.loads((runs[-1] / "metrics.json").read_text())
    assert 0.0 <= metrics["mrr@5"] <= 1.0 and metrics["n_queries"] == 5


@pytest.mark.parametrize("case", ["unreadable image", "missing index", "empty folder", "corrupt mesh",
                                  "wrong model", "missing model", "bad font"])
def test_bad_input_is_one_clear_line(capsys, workspace, tmp_path, case):
    index = tmp_path / "index"
    if case in ("unreadable image", "wrong model"):
        assert run_cli(capsys, "build-index", "--meshes", workspace["set"] / "database", "--model", workspace["model"],
                   "--out", index, "--workers", "0")[0] == 0
    if case == "unreadable image":
        (tmp_path / "bad.png").write_bytes(b"not a png")
        argv, expect = ["query", tmp_path / "bad.png", "--index", index], "bad.png"
    elif case == "missing index":
        (tmp_path / "q.png").write_bytes((workspace["set"] / "queries" / "0.png").read_bytes())
        argv, expect = ["query", tmp_path / "q.png", "--index", tmp_path / "nowhere"], "nowhere"
    elif case == "empty folder":
        (tmp_path / "empty").mkdir()
        argv, expect = ["build-index", "--meshes", tmp_path / "empty", "--model", workspace["model"], "--out",
                        index], "no mesh files"
    elif case == "corrupt mesh":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "broken.stl").write_bytes(b"solid junk\nnot really")
        argv, expect = ["build-index", "--meshes", tmp_path / "m", "--model", workspace["model"], "--out", index,
                        "--workers", "0"], "broken.stl"
    elif case == "wrong model":
        from retrieval.models import create_embedder

        other = create_embedder("resnet10t", embed_dim=16, input_size=32)
        other.save(tmp_path / "other.pt")
        argv = ["query", workspace["set"] / "queries" / "0.png", "--index", index, "--model", tmp_path / "other.pt"]
        expect = "build-index"
    elif case == "missing model":
        argv, expect = ["build-index", "--meshes", workspace["set"] / "database", "--model", tmp_path / "no.pt",
                        "--out", index], "no.pt"
    else:
        argv, expect = ["datagen", "print", CHARS[0], "--font", "no-such-face", "--out", tmp_path], "no-such-face"
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in err


def test_building_the_cli_imports_no_heavy_library():
    """`sinonom --help` stays instant: torch, open3d and ultralytics load only when a command needs them."""
    code = ("import sys; from retrieval.cli import build_parser; build_parser(); "
            "print(','.join(m for m in ('torch', 'open3d', 'ultralytics', 'timm', 'faiss') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_a_worker_error_shuts_the_workers_down_at_once(tmp_path):
    """A corrupt mesh met by a DataLoader worker: the error leaves no worker behind (otherwise interpreter
    exit kills them and prints a DataLoader traceback after the one-line error). gc is off, as it may
    well not run between the error and the exit."""
    import gc
    import multiprocessing
    import time

    from retrieval.embed import embed_meshes
    from retrieval.models import create_embedder

    corrupt = tmp_path / "corrupt.stl"
    corrupt.write_text("solid x\nnot really\n")
    model = create_embedder("resnet10t", embed_dim=8, input_size=32).eval()
    gc.disable()
    try:
        with pytest.raises(ValueError, match="corrupt.stl is not an STL mesh"):
            embed_meshes(model, [corrupt], workers=2, progress=False)
        deadline = time.monotonic() + 10
        while multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert multiprocessing.active_children() == []
    finally:
        gc.enable()
