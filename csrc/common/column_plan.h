// The plan every im2col -> GEMM driver of deformable convolution follows (PyTorch CPU/CUDA,
// ONNX Runtime CPU/CUDA), free of any framework: how many columns one chunk holds, where conv
// group g's block sits in a column row, in the weight and in the output channels. A binding
// supplies only its GEMM and its buffers.
//
// Layouts (see csrc/kernels/deform_im2col.h): a column row is [groups][K][C/groups]; the weight in
// column order is [C_out, K, C/groups] (= the [C_out, C/groups, K] filters transposed per output
// channel), so group g's GEMM is out[g] = W_g [C_out/groups, rows_g] x col_g^T [rows_g, q].
#pragma once

#include <algorithm>
#include <cstdint>

#include "../kernels/deform_im2col.h"

namespace dcn {

// Column-buffer entries per chunk (32 MB of float): bounds memory for big images while keeping
// each GEMM large.
constexpr int64_t kMaxColumnEntries = int64_t(1) << 23;

// Columns j0 .. j0 + q - 1 (global output positions j = n * out_h * out_w + p). With a plan made
// per image, a chunk never crosses an image: n and p0 are then its image and first position.
struct ColumnChunk {
  int64_t j0, q, n, p0;
};

struct ColumnPlan {
  int64_t positions;     // out_h * out_w per image
  int64_t total;         // positions over the whole batch
  int64_t chunk;         // columns per chunk (>= 1)
  int64_t column_width;  // C * K
  int64_t groups, c_out, c_out_g, rows_g;
  bool per_image;

  // per_image: chunks stay within one image (drivers writing [N, C_out, P] output directly).
  ColumnPlan(const DeformConvShape& s, int64_t c_out_, bool per_image_)
      : positions(s.out_size()),
        total(int64_t(s.batch) * s.out_size()),
        column_width(s.column_width()),
        groups(s.groups),
        c_out(c_out_),
        c_out_g(c_out_ / s.groups),
        rows_g(s.column_width() / s.groups),
        per_image(per_image_) {
    const int64_t span = per_image ? positions : total;
    chunk = std::max<int64_t>(1, std::min<int64_t>(span, kMaxColumnEntries / column_width));
  }

  // Entries of the largest chunk's column buffer [chunk, C*K].
  int64_t buffer_entries() const { return std::min(chunk, total) * column_width; }
  // Whether one chunk covers everything (no copy of partial results needed).
  bool single_chunk() const { return chunk >= (per_image ? positions : total); }

  // Conv group g's first entry within a column row, its filters' first entry in the
  // column-order weight [C_out, rows_g], and its first output channel.
  int64_t column_offset(int64_t g) const { return g * rows_g; }
  int64_t weight_offset(int64_t g) const { return g * c_out_g * rows_g; }
  int64_t out_channel(int64_t g) const { return g * c_out_g; }

  // Calls fn(chunk) for every chunk, in order.
  template <typename Fn>
  void for_each_chunk(const Fn& fn) const {
    if (per_image) {
      for (int64_t j = 0; j < total; j += positions) {
        for (int64_t p0 = 0; p0 < positions; p0 += chunk)
          fn(ColumnChunk{j + p0, std::min(chunk, positions - p0), j / positions, p0});
      }
    } else {
      for (int64_t j0 = 0; j0 < total; j0 += chunk) {
        const int64_t n = j0 / positions;
        fn(ColumnChunk{j0, std::min(chunk, total - j0), n, j0 - n * positions});
      }
    }
  }
};

// The column-order weight [C_out, K, C/groups] is the filters [C_out, C/groups, K] transposed per
// output channel: a batched transpose of B x R x S = C_out x (C/groups) x K.
struct WeightTranspose {
  int64_t batch, rows, cols;
};
inline WeightTranspose column_weight_transpose(const DeformConvShape& s, int64_t c_out) {
  return {c_out, s.channels_per_group(), s.kernel_size()};
}

}  // namespace dcn
