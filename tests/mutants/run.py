"""Applies each breakage of tests/mutants/mutants.py to a scratch copy of the tree, runs the
tests named for it, and reports which breakages the tests caught (`make mutants`).

    python tests/mutants/run.py [name ...]     # default: every mutant

Outcomes: killed (a named test went red), survived (all green: the promise is not held by a
test), snippet not found / ambiguous (the code moved: update mutants.py), error (pytest could
not run, or the mutant's `build` failed: the edit broke the tree, not a promise), baseline red
(the tests fail on the unbroken tree, so nothing can be concluded). Exit status 0 only when every
mutant was killed.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from mutants import MUTANTS  # noqa: E402

# Built files the tests need besides the tracked ones (copied, never mutated).
BUILT = ["model", "onnx_plugins/lib"]
# Build trees copied whole (objects too, so that a mutant's `build` recompiles only what its edit
# touches), and what the Makefile needs that is not in the tree (linked).
BUILD_TREES = ["build/cuda_on_cpu"]
LINKED = [".venv", "third_party"]
TIMEOUT_S = 600


def scratch_copy() -> str:
    """Tracked and untracked-but-not-ignored files, plus the built libraries, in a temp dir."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    dest = tempfile.mkdtemp(prefix="dcn-mutants-")
    for name in filter(None, files):
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), os.path.join(dest, name))
    for folder in BUILT:
        os.makedirs(os.path.join(dest, folder), exist_ok=True)
        for entry in os.listdir(os.path.join(ROOT, folder)):
            if entry.endswith(".so") or entry.startswith(".built"):
                shutil.copy2(os.path.join(ROOT, folder, entry), os.path.join(dest, folder, entry))
    for folder in BUILD_TREES:
        if os.path.isdir(os.path.join(ROOT, folder)):
            shutil.copytree(os.path.join(ROOT, folder), os.path.join(dest, folder))
    for name in LINKED:
        if os.path.exists(os.path.join(ROOT, name)):
            os.symlink(os.path.realpath(os.path.join(ROOT, name)), os.path.join(dest, name))
    return dest


def build(tree: str, target) -> bool:
    """Runs `make target` in `tree` (nothing to do without a target); whether it succeeded."""
    if not target:
        return True
    try:
        done = subprocess.run(["make", "--no-print-directory", "-s", target], cwd=tree,
                              capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def run_tests(tree: str, tests) -> str:
    """'passed', 'failed' or 'timeout' for the given node ids, run in `tree`."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p",
                               "no:cacheprovider", *tests], cwd=tree, env=env,
                              capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "timeout"
    # pytest: 0 all passed, 1 some test failed; anything else (collection error, usage) means
    # the mutant broke the tree rather than a promise.
    return {0: "passed", 1: "failed"}.get(done.returncode, f"pytest exit {done.returncode}")


def apply(tree: str, edits):
    """Makes the edits; returns (originals to restore, problem or None)."""
    originals = {}
    for path, find, replace in edits:
        full = os.path.join(tree, path)
        if not os.path.exists(full):
            return originals, f"file not found: {path}"
        with open(full) as f:
            text = f.read()
        originals.setdefault(full, text)
        count = text.count(find)
        if count != 1:
            return originals, (f"snippet not found in {path}" if count == 0
                               else f"snippet ambiguous ({count}x) in {path}")
        with open(full, "w") as f:
            f.write(text.replace(find, replace))
    return originals, None


def restore(originals) -> None:
    for full, text in originals.items():
        with open(full, "w") as f:
            f.write(text)


def main(names) -> int:
    chosen = [m for m in MUTANTS if not names or m["name"] in names]
    tree = scratch_copy()
    try:
        every_test = sorted({t for m in chosen for t in m["tests"]})
        targets = sorted({m["build"] for m in chosen if m.get("build")})
        if not all(build(tree, t) for t in targets) or run_tests(tree, every_test) != "passed":
            print(f"baseline red: {' '.join(every_test)} fail on the unbroken tree")
            return 2
        outcomes = []
        for mutant in chosen:
            start = time.perf_counter()
            originals, problem = apply(tree, mutant["edits"])
            if problem is None:
                built = build(tree, mutant.get("build"))
                result = run_tests(tree, mutant["tests"]) if built else "build failed"
                outcome = {"failed": "killed", "timeout": "killed (timeout)",
                           "passed": "SURVIVED"}.get(result, f"ERROR ({result})")
            else:
                outcome = problem.upper()
            restore(originals)
            outcomes.append(outcome)
            print(f"{outcome:<30} {mutant['name']:<36} {time.perf_counter() - start:6.1f} s  "
                  f"({mutant['promise']})", flush=True)
        killed = sum(o.startswith("killed") for o in outcomes)
        print(f"{killed} of {len(outcomes)} mutants killed")
        return 0 if killed == len(outcomes) else 1
    finally:
        shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
