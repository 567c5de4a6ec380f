"""`sinonom locate` / `sinonom read` end to end on a generated page, and the crop -> embed -> search path."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_DRAWN, run_cli
from datagen.align import crops_of
from datagen.pages import PageConfig, page_fonts, render_page
from datagen.prints import render_print
from retrieval.embed import embed_arrays
from retrieval.read import read_boxes

CONFIG = PageConfig(cell_px=(30.0, 40.0), columns=(3, 5), rows=(5, 8), note_prob=0.5)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_font):
    """A generated page, a character index of font templates (untrained embedder) and an untrained
    YOLOv8n checkpoint: every stage runs for real, only the weights are untrained (the localiser then
    finds one box per tile, the tile itself: the page fits in one 640 px tile)."""
    from datagen.localize import offline_ultralytics
    from retrieval.models import create_embedder
    from retrieval.pipeline import build_index, open_index

    root = tmp_path_factory.mktemp("read")
    page = render_page((8, 0), page_fonts([tiny_font], charset=TINY_DRAWN), CONFIG, strength=0.5)
    Image.fromarray(page.image).save(root / "page.jpg", quality=95)
    create_embedder("resnet10t", embed_dim=16, input_size=32).save(root / "embedder.pt")
    build_index(root / "index", model_path=root / "embedder.pt", fonts=[str(tiny_font.path)], chars=TINY_DRAWN,
                progress=False)
    offline_ultralytics().YOLO("yolov8n.yaml").save(root / "localizer.pt")
    index, embedder = open_index(root / "index")
    return {"root": root, "page": page, "index": index, "embedder": embedder}


def test_crops_are_framed_like_the_index_templates(tiny_font):
    """Nearest template in plain pixel space: right for (nearly) every clean character when the crops are
    framed like the templates (fitted, centred, on paper), wrong otherwise."""
    def normalised(image: np.ndarray) -> np.ndarray:
        pixels = np.asarray(Image.fromarray(image).resize((48, 48), Image.Resampling.BILINEAR), np.float32)
        pixels -= pixels.mean()
        return (pixels / (np.linalg.norm(pixels) + 1e-6)).ravel()

    page = render_page((8, 1), page_fonts([tiny_font], charset=TINY_DRAWN), CONFIG, strength=0.0)
    chars = list(TINY_DRAWN)
    templates = np.stack([normalised(render_print(c, tiny_font, size=128, strength=0.0)) for c in chars])
    boxes = np.array([c.box + (1.0,) for c in page.chars], np.float64)
    crops = np.stack([normalised(crop) for crop in crops_of(page.image, boxes)])
    best = (crops @ templates.T).argmax(axis=1)
    right = sum(chars[b] == truth.char for b, truth in zip(best, page.chars))
    assert right >= 0.95 * len(page.chars)


def test_read_boxes_returns_the_index_search_of_each_crop(workspace):
    page, index, embedder = workspace["page"], workspace["index"], workspace["embedder"]
    boxes = np.array([c.box + (0.9,) for c in page.chars], np.float64)
    chars = read_boxes(page.image, boxes, index, embedder, k=3)
    assert len(chars) == len(boxes) and read_boxes(page.image, boxes[:0], index, embedder) == []
    direct = index.search(embed_arrays(embedder, crops_of(page.image, boxes)), k=3)
    for n, char in enumerate(chars):
        assert char["box"] == [float(v) for v in boxes[n, :4]] and char["score"] == 0.9
        assert [c["id"] for c in char["candidates"]] == direct.ids(n)
        distances = [c["distance"] for c in char["candidates"]]
        assert distances == sorted(distances) and {c["label"] for c in char["candidates"]} <= set(TINY_DRAWN)


def test_locate_and_read_end_to_end(capsys, workspace):
    root = workspace["root"]
    assert max(workspace["page"].image.shape[:2]) <= 640
    weights = ["--localizer", root / "localizer.pt", "--conf", "0.0001", "--tile", "640", "--overlap", "64"]
    code, out, err = run_cli(capsys, "locate", root / "page.jpg", "--json", root / "boxes.json", "--crops",
                         root / "crops", *weights)
    assert code == 0, err
    located = json.loads((root / "boxes.json").read_text())
    assert len(located) == 1 and located[0]["width"] == workspace["page"].image.shape[1]
    boxes = located[0]["boxes"]
    assert boxes and all(len(b) == 5 and 0 <= b[0] < b[2] <= located[0]["width"] for b in boxes)
    assert sorted(i for column in located[0]["columns"] for i in column) == list(range(len(boxes)))
    assert len(list((root / "crops" / "page").glob("*.png"))) == len(boxes)
    assert "pages/s" in err

    code, out, err = run_cli(capsys, "read", root / "page.jpg", "--index", root / "index", "-k", "3", "--json",
                         root / "read.json", "--overlay", root / "overlay.png", *weights)
    assert code == 0, err
    result = json.loads((root / "read.json").read_text(encoding="utf-8"))[0]
    assert len(result["chars"]) == len(boxes)
    assert all(len(c["candidates"]) == 3 for c in result["chars"])
    lines = result["text"].split("\n")
    assert out.strip("\n") == result["text"] and len(lines) == len(located[0]["columns"])
    assert "".join(lines) == "".join(c["candidates"][0]["label"] for c in result["chars"])
    height, width = workspace["page"].image.shape[:2]
    assert Image.open(root / "overlay.png").size == (2 * width + 8, height)
    code, out, _ = run_cli(capsys, "read", root / "page.jpg", root / "page.jpg", "--index", root / "index", "--json", "-",
                       "--overlay", root / "many.png", *weights)
    assert code == 0 and len(json.loads(out)) == 2 and (root / "many_page.png").is_file()


def test_bad_pages_weights_and_index_are_one_line_errors(capsys, workspace, tmp_path):
    root = workspace["root"]
    weights = ["--localizer", root / "localizer.pt"]
    code, _, err = run_cli(capsys, "locate", tmp_path / "absent.jpg", *weights)
    assert code == 2 and "absent.jpg: no such file" in err and len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    code, _, err = run_cli(capsys, "read", broken, "--index", root / "index", *weights)
    assert code == 2 and "broken.jpg: not a readable image" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "locate", root / "page.jpg", "--localizer", tmp_path / "none.pt")
    assert code == 2 and "none.pt: no such localiser weights file" in err
    code, _, err = run_cli(capsys, "read", root / "page.jpg", "--index", tmp_path / "no_index", *weights)
    assert code == 2 and "no_index" in err and len(err.strip().splitlines()) == 1


def test_shipped_localizer_and_model_read_a_page_in_a_face_the_localizer_never_saw(tmp_path):
    """The defaults a fresh install gets (datagen/data/localizer.pt, retrieval/weights/default.pt) read a
    degraded page set in TW-Sung, held out of the localiser's training, against an index of that face's
    templates: nearly every character is found at IoU 0.5, in reading order, and the main-size ones are
    identified (the double-line small characters, ~15 px under heavy degradation, often are not)."""
    from datagen.fonts import resolve_fonts
    from datagen.localize import load_localizer, match_boxes
    from retrieval.pipeline import build_index, open_index
    from retrieval.read import read_page

    face = resolve_fonts(["TW-Sung"])[0]
    page = render_page((2026, 11), page_fonts([face], charset="nomnaocr_freq:300"),
                       PageConfig(columns=(4, 6), rows=(10, 14)), strength=0.8)
    build_index(tmp_path / "index", fonts=[str(face.path)], chars="nomnaocr_freq:300", progress=False)
    index, embedder = open_index(tmp_path / "index")
    result = read_page(page.image, load_localizer(), index, embedder, k=5)

    truth = np.array([c.box for c in page.chars], np.float64)
    found = np.array([c["box"] + [c["score"]] for c in result["chars"]], np.float64)
    matched = match_boxes(found, truth)
    assert (matched >= 0).sum() >= 0.95 * len(truth)  # recall
    assert (matched >= 0).sum() >= 0.95 * len(found)  # precision
    sequence = matched[matched >= 0]
    assert (np.diff(sequence) > 0).mean() >= 0.95  # reading order follows the truth's
    main = [m for m in matched if m >= 0 and page.chars[m].kind == "main"]
    right = sum(page.chars[m].char == c["candidates"][0]["label"] for c, m in zip(result["chars"], matched)
                if m in main)
    assert len(main) >= 0.6 * len(truth) and right >= 0.95 * len(main)


def test_unreadable_images_stay_one_clear_error_once_ultralytics_is_imported(tmp_path):
    """Importing ultralytics makes PIL ask for a HEIF plugin on unknown formats (an ImportError); queries,
    pages and patches all read images through open_image, which still names the file."""
    from datagen.errors import ImageReadError
    from datagen.files import open_image
    from datagen.localize import offline_ultralytics

    offline_ultralytics()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="bad.png: not a readable image"):
        open_image(bad, "L")
    with pytest.raises(ImageReadError, match="absent.png: no such image"):
        open_image(tmp_path / "absent.png")
    Image.new("L", (4, 3), 9).save(tmp_path / "ok.png")
    assert np.asarray(open_image(tmp_path / "ok.png")).shape == (3, 4, 3)


def test_an_unreadable_page_is_one_line_from_the_shell(workspace, tmp_path):
    """Run as a user does (a fresh process, ultralytics' own log handler live): nothing but our one line,
    and ultralytics does not try to install the HEIF plugin it asks for."""
    import subprocess
    import sys

    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    done = subprocess.run([sys.executable, "-m", "retrieval.cli", "locate", str(broken), "--localizer",
                           str(workspace["root"] / "localizer.pt")], capture_output=True, text=True)
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and output == [f"sinonom locate: error: {broken}: not a readable image (unknown format)"]
