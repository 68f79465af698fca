"""Runs every benchmark script in this folder (what `make bench` does)."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ["deform_conv2d.py", "deform_roi_pool.py", "ort.py", "model.py", "breakdown.py",
           "proposals.py", "service.py", "fairness.py", "before_after.py"]

if __name__ == "__main__":
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, script)], check=True)
        print()
