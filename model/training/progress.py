"""What a run leaves for a person to follow: the metrics log `<out>/metrics.jsonl` (one JSON
object a line: {"iteration", "loss", "loss_<part>", "lr", "images_per_s", "data_s", "step_s"}
for training, {"iteration", "AP", "AP50", "per_class"} for each validation) and its picture
`<out>/curves.png` (losses, and validation AP overall and AP50 per class, by iteration)."""
import json
import os
from typing import Any, Dict, List


class MetricsLog:
    """Appends records to `<out>/metrics.jsonl`; on resume, drops records past the iteration
    the run restarts from (they are recomputed)."""

    def __init__(self, out: str, resume_at: int = 0) -> None:
        self.path = os.path.join(out, "metrics.jsonl")
        kept = [r for r in self.records() if r["iteration"] <= resume_at] if resume_at else []
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)

    def records(self) -> List[Dict[str, Any]]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def write(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def plot_curves(records: List[Dict[str, Any]], path: str) -> None:
    """Draws the training losses and the validation AP of `records` into the PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r]
    val = [r for r in records if "AP50" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    parts = sorted({k for r in train for k in r if k.startswith("loss")})
    for k in parts:
        left.plot([r["iteration"] for r in train], [r[k] for r in train], label=k,
                  linewidth=2 if k == "loss" else 1)
    left.set(xlabel="iteration", ylabel="loss", title="training loss", yscale="log")
    if parts:
        left.legend(fontsize=8)
    its = [r["iteration"] for r in val]
    right.plot(its, [r["AP50"] for r in val], "o-", linewidth=2, label="AP50 (all classes)")
    right.plot(its, [r["AP"] for r in val], "s-", linewidth=2, label="AP (all classes)")
    names = sorted({c for r in val for c in r.get("per_class", {})})
    for c in names:
        right.plot(its, [r["per_class"].get(c) if r["per_class"].get(c) is not None
                         else float("nan") for r in val], ".--", label=f"AP50 {c}")
    right.set(xlabel="iteration", ylabel="AP", title="validation", ylim=(0, 1))
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=90)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
