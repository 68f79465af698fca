"""Pascal VOC: a folder with `Annotations/*.xml` and `JPEGImages/`, a folder of XML files beside
their images, or an image-set file (`ImageSets/Main/train.txt`: one id per line) of such a
folder. Classes: the names in `classes.txt` (one a line) if the folder has one, else every name
found, sorted. `difficult` objects are kept as ignore regions, as VOC's evaluation does."""
import glob
import os
import xml.etree.ElementTree as ET
from typing import List, Optional, Tuple

from .record import DatasetError, Report, Sample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def find_image(folder: str, name: str) -> Optional[str]:
    """The image `name` in `folder`: as named, else by stem with any image extension."""
    exact = os.path.join(folder, name)
    if name and os.path.isfile(exact):
        return exact
    stem = os.path.splitext(name)[0]
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        if os.path.isfile(os.path.join(folder, stem + ext)):
            return os.path.join(folder, stem + ext)
    return None


def read_class_list(folder: str) -> Optional[List[str]]:
    path = os.path.join(folder, "classes.txt")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def read_voc(path: str, images_dir: Optional[str] = None,
             ids: Optional[List[str]] = None) -> Tuple[List[str], List[Sample], Report]:
    """(classes, samples, report) of the VOC folder or image-set file at `path` (only images
    `ids` if given: classes are then those found in them)."""
    report = Report(path, "voc")
    if os.path.isfile(path) and ids is None:  # ImageSets/Main/<split>.txt
        with open(path) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    elif os.path.isfile(path):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    else:
        root = path
    layout = os.path.isdir(os.path.join(root, "Annotations"))
    xml_dir = os.path.join(root, "Annotations") if layout else root
    image_dir = images_dir or (os.path.join(root, "JPEGImages") if layout else root)
    xmls = ([os.path.join(xml_dir, i + ".xml") for i in ids] if ids is not None
            else sorted(glob.glob(os.path.join(xml_dir, "*.xml"))))
    if not xmls:
        raise DatasetError(f"{path}: no Pascal VOC annotation files (*.xml) found")
    parsed, names = [], set()
    for xml in xmls:
        image_id = os.path.splitext(os.path.basename(xml))[0]
        try:
            root_el = ET.parse(xml).getroot()
        except (OSError, ET.ParseError) as e:
            report.note("unreadable annotation files (skipped)", f"{image_id}: {e}")
            continue
        objects = []
        for o in root_el.iter("object"):
            try:
                bb = o.find("bndbox")
                box = [float(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")]
                name = o.find("name").text.strip()
            except (AttributeError, TypeError, ValueError):
                report.note("objects without a name and numeric bndbox (dropped)", image_id)
                continue
            difficult = o.find("difficult")
            objects.append((box, name, difficult is not None and difficult.text.strip() == "1"))
            names.add(name)
        filename = root_el.findtext("filename", "").strip()
        parsed.append((image_id, find_image(image_dir, filename or image_id)
                       or os.path.join(image_dir, filename or image_id), objects))
    classes = read_class_list(root) or sorted(names)
    label_of = {c: k + 1 for k, c in enumerate(classes)}
    samples = []
    for image_id, image_path, objects in parsed:
        known = [o for o in objects if o[1] in label_of]
        for o in objects:
            if o[1] not in label_of:
                report.note("objects of classes not in classes.txt (dropped)", o[1])
        samples.append(Sample.of(image_id, image_path, [o[0] for o in known],
                                 [label_of[o[1]] for o in known], [o[2] for o in known],
                                 source_id=image_id))
    return classes, samples, report
