"""Step results of `make gpu-check` and the two reports written from them (Markdown, JSON)."""
import json
import platform
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

# pass / fail: the step ran on a GPU. skip: it could not run here (the detail says why; a skip is
# not a pass). dry-run: walked without a GPU, exercising everything that needs none.
STATUSES = ("pass", "fail", "skip", "dry-run")


@dataclass
class Step:
    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    command: List[str] = field(default_factory=list)
    output_tail: str = ""
    figures: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown step status {self.status!r}")


def exit_code(steps: List[Step]) -> int:
    """1 if any step failed (a test, a sanitizer check, a build or a crashed benchmark), else 0."""
    return int(any(s.status == "fail" for s in steps))


def write_json(path: str, environment: Dict[str, Any], steps: List[Step]) -> None:
    with open(path, "w") as f:
        json.dump({"environment": environment, "steps": [asdict(s) for s in steps],
                   "exit_code": exit_code(steps)}, f, indent=2, default=str)


def write_markdown(path: str, environment: Dict[str, Any], steps: List[Step]) -> None:
    lines = ["# dcnserve gpu-check", "",
             f"Host {platform.node()}, " + ", ".join(f"{k}: {v}" for k, v in environment.items()),
             "", "| step | status | seconds | detail |", "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.detail} |" for s in steps]
    for s in steps:
        if s.output_tail:
            lines += ["", f"## {s.name}", "", "```", s.output_tail.rstrip(), "```"]
    lines += ["", f"exit code: {exit_code(steps)}", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
