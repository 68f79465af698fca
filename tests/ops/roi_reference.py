"""Pure-PyTorch reference for (position-sensitive) deformable RoI pooling, written from the paper
and RoIAlign's sampling rules, independent of the C++ kernels; differentiable by autograd."""
import math

import torch


def _bilinear(img, y, x):
    """img [C, H, W]; y, x 0-d tensors (may require grad). RoIAlign border rules."""
    c, h, w = img.shape
    if y.item() < -1.0 or y.item() > h or x.item() < -1.0 or x.item() > w:
        return img.new_zeros(c)
    y = torch.clamp(y, min=0.0)
    x = torch.clamp(x, min=0.0)
    y0, x0 = int(math.floor(y.item())), int(math.floor(x.item()))
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = y.detach() * 0 + y0
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = x.detach() * 0 + x0
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * img[:, y0, x0] + hy * lx * img[:, y0, x1] + ly * hx * img[:, y1, x0]
            + ly * lx * img[:, y1, x1])


def deform_roi_pool_ref(input, rois, offset, output_size, spatial_scale, sampling_ratio, gamma,
                        position_sensitive=False, aligned=True):
    ph_n, pw_n = output_size
    k = rois.shape[0]
    c_in = input.shape[1]
    c_out = c_in // (ph_n * pw_n) if position_sensitive else c_in
    rows = []
    for r in range(k):
        b = int(rois[r, 0])
        x1, y1, x2, y2 = (rois[r, i] * spatial_scale for i in range(1, 5))
        roi_w, roi_h = x2 - x1, y2 - y1
        shift = 0.5 if aligned else 0.0
        if not aligned:
            roi_w, roi_h = torch.clamp(roi_w, min=1.0), torch.clamp(roi_h, min=1.0)
        bin_w, bin_h = roi_w / pw_n, roi_h / ph_n
        gh = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(bin_h.item())), 0)
        gw = sampling_ratio if sampling_ratio > 0 else max(int(math.ceil(bin_w.item())), 0)
        bins = []
        for i in range(ph_n):
            for j in range(pw_n):
                sy = y1 - shift + i * bin_h
                sx = x1 - shift + j * bin_w
                if offset is not None:
                    sx = sx + gamma * roi_w * offset[r, 0, i, j]
                    sy = sy + gamma * roi_h * offset[r, 1, i, j]
                acc = input.new_zeros(c_in)
                for iy in range(gh):
                    for ix in range(gw):
                        yy = sy + (iy + 0.5) * bin_h / gh
                        xx = sx + (ix + 0.5) * bin_w / gw
                        acc = acc + _bilinear(input[b], yy, xx)
                acc = acc / max(gh * gw, 1)
                if position_sensitive:
                    acc = acc.view(c_out, ph_n, pw_n)[:, i, j]
                bins.append(acc)
        rows.append(torch.stack(bins, dim=1).view(c_out, ph_n, pw_n))
    if not rows:
        return input.new_zeros(0, c_out, ph_n, pw_n)
    return torch.stack(rows)
