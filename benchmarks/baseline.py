"""The code before the speed work (issue 14), built once beside this tree, so `make bench` can
measure today's code against it in one run on one machine.

    python benchmarks/baseline.py          # prints the baseline tree's path (builds it if needed)

The tree is `git archive` of BASELINE under build/baseline-<sha>, CPU build of its op library
and its ONNX Runtime plugin (the headers of this tree's third_party/onnxruntime), ~5 min on
2 cores, done once.
"""
import os
import shutil
import subprocess
import sys

BASELINE = "19f8afaf00afa5e2183cdcf3d7cae8138723a7d6"  # main before issue 14
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def baseline_tree(python: str = sys.executable) -> str:
    """Path of the built baseline tree (built on first use)."""
    tree = os.path.join(ROOT, "build", f"baseline-{BASELINE[:12]}")
    done = os.path.join(tree, ".built")
    if os.path.exists(done):
        return tree
    if os.path.exists(tree):
        shutil.rmtree(tree)
    os.makedirs(tree)
    got = subprocess.run(["git", "-C", ROOT, "archive", BASELINE], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    if got.returncode != 0:
        shutil.rmtree(tree)
        raise RuntimeError(f"the baseline commit {BASELINE[:12]} is not in this clone (a shallow "
                           f"clone? `git fetch --unshallow`): {got.stderr.decode().strip()}")
    archive = got.stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    env = dict(os.environ, FORCE_CUDA="0")
    print(f"building the baseline {BASELINE[:12]} in {tree} (once)", file=sys.stderr, flush=True)
    subprocess.run([python, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=tree, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    headers = os.path.join(ROOT, "third_party", "onnxruntime")
    sources = sorted(os.path.join("onnx_plugins", "src", f)
                     for f in os.listdir(os.path.join(tree, "onnx_plugins", "src"))
                     if f.endswith(".cc"))
    os.makedirs(os.path.join(tree, "onnx_plugins", "lib"), exist_ok=True)
    subprocess.run(["g++", "-std=c++17", "-O3", "-fPIC", "-shared", "-fopenmp-simd",
                    "-DDCN_OPENMP_SIMD", "-I" + headers, *sources, "-Wl,--no-undefined",
                    "-Wl,--version-script=onnx_plugins/src/exports.lds",
                    "-o", "onnx_plugins/lib/libdcn_ort.so"], cwd=tree, check=True)
    open(done, "w").close()
    return tree


if __name__ == "__main__":
    print(baseline_tree())
