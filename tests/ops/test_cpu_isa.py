"""Each compiled CPU variant (baseline x86-64, AVX2, AVX-512: csrc/cpu/isa_variants.inc) forced
in turn with DCN_CPU_ISA, in a fresh process, against torchvision in float64, for the torch op
(forward and gradients) and the ONNX Runtime plugin. Without the switch only the widest variant
the machine has would ever run."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The CPU features each variant is compiled for (csrc/cpu/isa.h).
FEATURES = {"baseline": set(), "avx2": {"avx2", "fma"},
            "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}}


def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f
                         if line.startswith("flags")), set())
    except OSError:
        return set()


def check_variant(name: str) -> None:
    """Runs in the child process, with DCN_CPU_ISA=name set before the library loads."""
    from test_onnx_plugins import single_node_model

    import onnx_plugins
    from model import ops

    assert torch.ops.dcn._cpu_isa() == name, torch.ops.dcn._cpu_isa()
    torch.manual_seed(0)
    # 37 channels, 2 offset groups: full SIMD vectors plus a remainder in every variant.
    x = torch.randn(2, 74, 9, 10, dtype=torch.float64)
    weight = torch.randn(5, 74, 3, 3, dtype=torch.float64)
    offset = torch.randn(2, 36, 9, 10, dtype=torch.float64) * 2
    mask = torch.rand(2, 18, 9, 10, dtype=torch.float64)
    seed = torch.randn(2, 5, 9, 10, dtype=torch.float64)
    want = {}
    for impl, dtype in ((torchvision.ops.deform_conv2d, torch.float64),
                        (ops.deform_conv2d, torch.float32)):
        leaves = [t.to(dtype).clone().requires_grad_() for t in (x, offset, weight, mask)]
        out = impl(leaves[0], leaves[1], leaves[2], None, padding=1, mask=leaves[3])
        grads = torch.autograd.grad(out, leaves, seed.to(dtype))
        if dtype == torch.float64:
            want = {"out": out, "grads": grads}
            continue
        # float32 against float64: sums of 74 * 9 (forward) terms, relative to the largest value.
        for got, ref in zip((out, *grads), (want["out"], *want["grads"])):
            bound = 74 * 9 * 2.0**-23 * 8 * ref.abs().max().item()
            assert (got.double() - ref).abs().max().item() <= bound
    feeds = {"X": x.float().numpy(), "W": weight.float().numpy(), "O": offset.float().numpy(),
             "M": mask.float().numpy()}
    model = single_node_model("DeformConv2d", "dcn", ["X", "W", "O", "", "M"],
                              kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                              dilations=[1, 1], group=1, offset_group=2)
    got = onnx_plugins.session(model).run(None, feeds)[0]
    ref = want["out"].detach().numpy()
    np.testing.assert_array_less(np.abs(got - ref), 74 * 9 * 2.0**-23 * 8 * np.abs(ref).max())
    # RoI pooling's channel blocks (csrc/cpu/roi_pool_rows.inc): 37 channels = 2 blocks of 16 and
    # a remainder, against torchvision's roi_align at zero offsets, torch op and plugin.
    feature = torch.randn(2, 37, 12, 11)
    rois = torch.tensor([[0, 1.0, 2.0, 60.0, 50.0], [1, 10.0, 0.0, 40.0, 90.0],
                         [1, -5.0, 3.0, 30.0, 20.0]])
    expected = torchvision.ops.roi_align(feature.double(), rois.double(), (3, 3), 1 / 8, 2,
                                         aligned=True)
    pooled = ops.deform_roi_pool(feature, rois, None, (3, 3), 1 / 8, 2)
    assert (pooled.double() - expected).abs().max().item() < 1e-5
    model = single_node_model("DeformRoIPool", "dcn", ["X", "R"], pooled_size=[3, 3],
                              spatial_scale=1 / 8, sampling_ratio=2, gamma=0.1, aligned=1)
    got = onnx_plugins.session(model).run(None, {"X": feature.numpy(), "R": rois.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    print("checked", name)


@pytest.mark.parametrize("name", FEATURES)
def test_forced_variant_matches_torchvision(name):
    if not FEATURES[name] <= cpu_flags():
        pytest.skip(f"this CPU lacks {sorted(FEATURES[name] - cpu_flags())}: the {name} variant "
                    "cannot run here")
    code = ("import sys; sys.path[:0] = ['tests/ops', '.']; from test_cpu_isa import check_variant; "
            f"check_variant({name!r})")
    env = dict(os.environ, DCN_CPU_ISA=name)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and f"checked {name}" in done.stdout, done.stderr[-3000:]


def test_unrunnable_or_unknown_variant_falls_back_to_the_best():
    flags = cpu_flags()
    best = "avx512" if FEATURES["avx512"] <= flags else "avx2" if FEATURES["avx2"] <= flags \
        else "baseline"
    forced = "sse9" if best == "avx512" else "avx512"  # one process: the choice is read once
    code = "import model.ops, torch; print(torch.ops.dcn._cpu_isa())"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, DCN_CPU_ISA=forced), timeout=300)
    assert done.stdout.strip() == best, done.stderr[-2000:]
