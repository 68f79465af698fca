"""The dataset readers (COCO, VOC, YOLO, CSV) and the checks every dataset passes: each broken
dataset is reported with counts, or refused with a message before any training step."""
import json
import os

import numpy as np
import pytest
from tiny_datasets import CLASSES, WRITERS, quadrants, write_coco, write_csv, write_yolo

from model.training import train as train_command
from model.training.datasets import open_dataset


@pytest.fixture(scope="module")
def items():
    return quadrants()


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_reads_the_same_boxes_and_classes(tmp_path, items, fmt):
    dataset = open_dataset(WRITERS[fmt](str(tmp_path / fmt), items))
    assert dataset.format == fmt and dataset.classes == CLASSES
    by_id = {s.image_id: s for s in dataset.samples}
    for stem, _, boxes, names in items:
        sample = by_id[stem] if fmt != "coco" else next(
            s for s in dataset.samples if s.path.endswith(stem + ".png"))
        assert (sample.width, sample.height) == (200, 200)
        np.testing.assert_allclose(sample.boxes, boxes, atol=0.01)
        assert [CLASSES[k - 1] for k in sample.labels] == names
    image, target = dataset[0]
    assert image.shape == (200, 200, 3) and image.dtype == np.uint8
    assert set(target) == {"boxes", "labels", "ignore", "image_id"}


def test_coco_classes_follow_category_ids_and_crowd_boxes_are_ignore_regions(tmp_path, items):
    path = write_coco(str(tmp_path), items, category_ids={"Dead": 0, "Alive": 9})
    with open(path) as f:
        doc = json.load(f)
    doc["annotations"][0]["iscrowd"] = 1
    with open(path, "w") as f:
        json.dump(doc, f)
    dataset = open_dataset(path)
    assert dataset.classes == ["Dead", "Alive"] and dataset.category_ids == [0, 9]
    assert sum(int(s.ignore.sum()) for s in dataset.samples) == 1


def test_voc_difficult_objects_are_ignore_regions_and_image_sets_select(tmp_path, items):
    folder = WRITERS["voc"](str(tmp_path), items)
    xml = os.path.join(folder, "Annotations", "soap_q0.xml")
    with open(xml) as f:
        text = f.read()
    with open(xml, "w") as f:
        f.write(text.replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    os.makedirs(os.path.join(folder, "ImageSets", "Main"))
    with open(os.path.join(folder, "ImageSets", "Main", "val.txt"), "w") as f:
        f.write("soap_q0\nsoap_q3\n")
    dataset = open_dataset(os.path.join(folder, "ImageSets", "Main", "val.txt"))
    assert [s.image_id for s in dataset.samples] == ["soap_q0", "soap_q3"]
    assert int(dataset.samples[0].ignore.sum()) == 1


def test_broken_boxes_are_clipped_or_dropped_and_counted(tmp_path, items):
    path = write_coco(str(tmp_path), items)
    with open(path) as f:
        doc = json.load(f)
    image_id = doc["images"][0]["id"]
    doc["annotations"] += [
        {"id": 901, "image_id": image_id, "category_id": 3, "bbox": [190, 190, 30, 30]},
        {"id": 902, "image_id": image_id, "category_id": 3, "bbox": [50, 50, 0, 10]},
        {"id": 903, "image_id": image_id, "category_id": 3, "bbox": [500, 500, 10, 10]},
        {"id": 904, "image_id": image_id, "category_id": 42, "bbox": [5, 5, 10, 10]},
        {"id": 905, "image_id": 7777, "category_id": 3, "bbox": [5, 5, 10, 10]}]
    doc["images"].append(dict(doc["images"][1]))  # a duplicate image id
    doc["images"].append({"id": 555, "file_name": "images/none.png", "width": 9, "height": 9})
    with open(os.path.join(tmp_path, "images", "broken.png"), "wb") as f:
        f.write(b"\x89PNG not really")
    doc["images"].append({"id": 556, "file_name": "images/broken.png", "width": 9, "height": 9})
    with open(path, "w") as f:
        json.dump(doc, f)
    dataset = open_dataset(path)
    counts = dataset.report.counts
    assert counts["boxes extending outside their image (clipped to it)"] >= 1
    assert counts["boxes of zero or negative size (dropped)"] == 1
    assert counts["boxes wholly outside their image (dropped)"] == 1
    assert counts["annotations of unknown category ids (dropped)"] == 1
    assert counts["annotations of unknown image ids (dropped)"] == 1
    assert counts["duplicate image ids (first kept)"] == 1
    assert counts["image files missing (skipped)"] == 1
    assert counts["image files unreadable (skipped)"] == 1
    assert len(dataset) == 4
    boxes = np.concatenate([s.boxes for s in dataset.samples])
    assert boxes.min() >= 0 and boxes.max() <= 200


def test_yolo_unknown_class_ids_and_images_without_labels(tmp_path, items):
    folder = write_yolo(str(tmp_path), items)
    with open(os.path.join(folder, "labels", "soap_q0.txt"), "a") as f:
        f.write("5 0.5 0.5 0.1 0.1\nnot a box\n")
    os.remove(os.path.join(folder, "labels", "soap_q1.txt"))
    counts = open_dataset(folder).report.counts
    assert counts["boxes of unknown class ids (dropped)"] == 1
    assert counts["unparseable label lines (dropped)"] == 1
    assert counts["images without boxes (kept as negatives)"] == 1


def refusal(capsys, argv):
    """The training command's exit code and stderr for `argv` (it must stop before training)."""
    with pytest.raises(SystemExit) as e:
        train_command.main(argv + ["--iterations", "1"])
    return e.value.code, capsys.readouterr().err


def test_refuses_a_dataset_whose_images_are_all_missing(tmp_path, capsys, items):
    path = write_csv(str(tmp_path), items)
    for stem, *_ in items:
        os.remove(os.path.join(tmp_path, stem + ".png"))
    code, err = refusal(capsys, ["--data", path, "--out", str(tmp_path / "run")])
    assert code == 2 and "no usable images (of 4 listed)" in err
    assert "4 image files missing (skipped)" in err
    assert not os.path.exists(tmp_path / "run" / "resume.pt")


def test_refuses_an_empty_validation_split(tmp_path, capsys, items):
    path = write_csv(str(tmp_path), items[:1])
    code, err = refusal(capsys, ["--data", path, "--out", str(tmp_path / "run")])
    assert code == 2 and "too few to hold some out for validation" in err


def test_refuses_a_class_without_training_boxes(tmp_path, capsys, items):
    only_dead = [(s, im, b[[c == "Dead" for c in n]], [c for c in n if c == "Dead"])
                 for s, im, b, n in items]
    path = write_coco(str(tmp_path), only_dead)
    code, err = refusal(capsys, ["--data", path, "--val-fraction", "0.25",
                                 "--out", str(tmp_path / "run")])
    assert code == 2 and "class 'Alive' has no boxes in the training split" in err


def test_refuses_a_dataset_without_boxes(tmp_path, capsys, items):
    path = write_coco(str(tmp_path), [(s, im, b[:0], []) for s, im, b, n in items])
    code, err = refusal(capsys, ["--data", path, "--out", str(tmp_path / "run")])
    assert code == 2 and "the training split has no boxes at all" in err
    assert "4 images without boxes (kept as negatives)" in err


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable COCO JSON file"),
    ('{"images": []}', "needs lists 'images', 'annotations' and 'categories'")])
def test_refuses_a_file_that_is_not_coco(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, err = refusal(capsys, ["--data", str(path), "--out", str(tmp_path / "run")])
    assert code == 2 and message in err


def test_refuses_a_path_of_no_known_format(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    code, err = refusal(capsys, ["--data", str(tmp_path / "notes"), "--out", str(tmp_path / "r")])
    assert code == 2 and "cannot tell the dataset format" in err
    code, err = refusal(capsys, ["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert code == 2 and "no such file or folder" in err


def test_validation_classes_are_matched_by_name(tmp_path, items):
    from model.training.splits import training_splits

    train_path = write_coco(str(tmp_path / "t"), items, category_ids={"Alive": 1, "Dead": 2})
    val_path = write_coco(str(tmp_path / "v"), items[3:], category_ids={"Dead": 5, "Alive": 6})
    train, val, _ = training_splits(dict(train_command.DEFAULTS, data=train_path, val=val_path))
    assert val.classes == train.classes == CLASSES
    assert val.box_counts() == [4, 5]  # Alive, Dead in quadrant 3
