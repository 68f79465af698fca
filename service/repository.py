"""The model repository on disk, in Triton's layout and nothing else:

    <root>/<model>/<version>/<stem>.safetensors + <stem>.json

A version is a folder named by a positive integer holding exactly one checkpoint (the JSON
carries the classes, tile settings and architecture, so nothing else is needed to serve it).
Other files and folders are ignored; a version folder without exactly one checkpoint is
reported, not served.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List


@dataclass
class ModelOnDisk:
    name: str
    versions: Dict[int, str] = field(default_factory=dict)  # version -> checkpoint stem
    problems: Dict[int, str] = field(default_factory=dict)  # version -> why it cannot load

    def newest(self, count: int) -> List[int]:
        """The `count` highest versions, highest first."""
        return sorted(self.versions, reverse=True)[:count]


def checkpoint_stem(folder: str) -> str:
    """The one `<stem>` in `folder` with both `<stem>.json` and `<stem>.safetensors`;
    ValueError otherwise."""
    names = set(os.listdir(folder))
    stems = sorted(n[:-5] for n in names if n.endswith(".json") and n[:-5] + ".safetensors"
                   in names)
    if len(stems) != 1:
        raise ValueError(f"{folder} holds {len(stems)} checkpoints (<stem>.safetensors + "
                         "<stem>.json); a version folder holds exactly one")
    return os.path.join(folder, stems[0])


def scan(root: str) -> Dict[str, ModelOnDisk]:
    """Every model folder under `root`, by name."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"model repository {root!r} is not a folder")
    models: Dict[str, ModelOnDisk] = {}
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(folder):
            continue
        model = models[name] = ModelOnDisk(name)
        for entry in os.listdir(folder):
            path = os.path.join(folder, entry)
            if not (entry.isdigit() and int(entry) > 0 and os.path.isdir(path)):
                continue
            try:
                model.versions[int(entry)] = checkpoint_stem(path)
            except ValueError as e:
                model.problems[int(entry)] = str(e)
    return models
