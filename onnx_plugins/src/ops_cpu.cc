// CPU kernels: the deformable conv builds its columns with the shared loops
// (csrc/cpu/column_loops.inc, AVX2/AVX-512 dispatched) and multiplies them with ONNX Runtime's own
// Gemm; RoI pooling loops over csrc/kernels/deform_roi_pool.h. All parallel work runs on the
// session's intra-op thread pool.
#include "ops_cpu.h"

#include "../../csrc/common/column_plan.h"
#include "../../csrc/cpu/isa.h"
#include "../../csrc/cpu/roi_pool_loops.h"

#include <algorithm>
#include <vector>

namespace dcn {
// ONNX Runtime's intra-op thread pool as the column loops' parallel policy.
struct OrtParallel {
  const Ort::KernelContext& ctx;

  template <typename F>
  void run(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    const int64_t n = end - begin;
    if (n <= 0) return;
    const int64_t blocks = std::min<int64_t>((n + grain - 1) / grain, 256);
    if (blocks <= 1) {
      f(begin, end);
      return;
    }
    struct Job {
      const F& f;
      int64_t begin, end, blocks;
    } job{f, begin, end, blocks};
    ctx.ParallelFor(
        [](void* data, size_t i) {
          const Job& j = *static_cast<const Job*>(data);
          const int64_t size = j.end - j.begin;
          const int64_t lo = j.begin + size * static_cast<int64_t>(i) / j.blocks;
          const int64_t hi = j.begin + size * (static_cast<int64_t>(i) + 1) / j.blocks;
          if (lo < hi) j.f(lo, hi);
        },
        static_cast<size_t>(blocks), 0, &job);
  }
};

// The column loops this op uses, one set per instruction set.
using Im2col = void (*)(const OrtParallel&, const DeformConvShape&, const float*, const float*,
                        const float*, int64_t, int64_t, float*);
using Transpose = void (*)(const OrtParallel&, const float*, int64_t, int64_t, int64_t, float*);
using RoIForward = void (*)(const OrtParallel&, const RoIPoolShape&, const float*, const float*,
                            const float*, int64_t, float*);

struct ColumnLoops {
  Im2col im2col;
  Transpose transpose;
  RoIForward roi_forward;  // csrc/cpu/roi_pool_rows.inc
};
}  // namespace dcn

#define DCN_ISA_FILE "../../onnx_plugins/src/ort_column_loops.inc"
#include "../../csrc/cpu/isa_variants.inc"

namespace dcn::ort {
namespace {

const ColumnLoops& column_loops() {
  static const ColumnLoops best = DCN_PICK_ISA(kColumnLoops);
  return best;
}

Ort::Op make_gemm(const OrtKernelInfo* info, bool with_bias) {
  const int64_t trans_a = 0, trans_b = 1;
  const float one = 1.f;
  const Ort::OpAttr attrs[] = {Ort::OpAttr("transA", &trans_a, 1, OrtOpAttrType::ORT_OP_ATTR_INT),
                               Ort::OpAttr("transB", &trans_b, 1, OrtOpAttrType::ORT_OP_ATTR_INT),
                               Ort::OpAttr("alpha", &one, 1, OrtOpAttrType::ORT_OP_ATTR_FLOAT),
                               Ort::OpAttr("beta", &one, 1, OrtOpAttrType::ORT_OP_ATTR_FLOAT)};
  const char* type_names[] = {"T"};
  const ONNXTensorElementDataType types[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT};
  return Ort::Op::Create(info, "Gemm", "", 13, type_names, types, 1, attrs, 4, with_bias ? 3 : 2,
                         1);
}

Ort::Value wrap(const Ort::MemoryInfo& cpu, const float* data, std::vector<int64_t> shape) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  return Ort::Value::CreateTensor<float>(cpu, const_cast<float*>(data), static_cast<size_t>(count),
                                         shape.data(), shape.size());
}

const float* data_or_null(const Ort::ConstValue& v) {
  return v ? v.GetTensorData<float>() : nullptr;
}

}  // namespace

DeformConv2dCpu::DeformConv2dCpu(const OrtKernelInfo* info)
    : attributes(info), gemm(make_gemm(info, false)), gemm_bias(make_gemm(info, true)) {}

OrtStatusPtr DeformConv2dCpu::ComputeV2(OrtKernelContext* raw) {
  return status_of([&] {
    Ort::KernelContext ctx(raw);
    DeformConvCall call = deform_conv_call(ctx, attributes);
    const DeformConvShape& s = call.shape;
    const Ort::ConstValue &x = call.x, &w = call.w, &offset = call.offset;
    const Ort::ConstValue &bias = call.bias, &mask = call.mask;
    const int64_t c_out = call.c_out, P = s.out_size();
    float* out = call.y.GetTensorMutableData<float>();
    if (s.batch == 0) return;
    const OrtParallel par{ctx};
    const ColumnLoops& loops = column_loops();
    const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
    const ColumnPlan plan(s, c_out, /*per_image=*/true);
    const int64_t c_out_g = plan.c_out_g, rows_g = plan.rows_g;

    // Channels-last images and the weight in column order.
    std::vector<float> image(static_cast<size_t>(s.batch) * s.plane_size() * s.channels);
    loops.transpose(par, x.GetTensorData<float>(), s.batch, s.channels, s.plane_size(),
                    image.data());
    const WeightTranspose wt = column_weight_transpose(s, c_out);
    std::vector<float> weight(static_cast<size_t>(c_out) * rows_g);
    loops.transpose(par, w.GetTensorData<float>(), wt.batch, wt.rows, wt.cols, weight.data());

    std::vector<float> col(static_cast<size_t>(plan.buffer_entries()));
    std::vector<float> col_g(s.groups > 1 ? static_cast<size_t>(plan.chunk * rows_g) : 0);
    std::vector<float> result(plan.single_chunk() ? 0 : static_cast<size_t>(c_out_g * plan.chunk));
    plan.for_each_chunk([&](const ColumnChunk& k) {
      const int64_t q = k.q;
      loops.im2col(par, s, image.data(), offset.GetTensorData<float>(), data_or_null(mask), k.j0, q,
                   col.data());
      for (int64_t g = 0; g < s.groups; ++g) {
        const float* b = col.data();
        if (s.groups > 1) {  // the group's column block, made contiguous for Gemm
          for (int64_t i = 0; i < q; ++i)
            std::copy_n(col.data() + i * plan.column_width + plan.column_offset(g), rows_g,
                        col_g.data() + i * rows_g);
          b = col_g.data();
        }
        // out[n][group g's channels][p0 .. p0 + q - 1], row stride P.
        float* out_g = out + (k.n * c_out + plan.out_channel(g)) * P + k.p0;
        float* dst = plan.single_chunk() ? out_g : result.data();
        Ort::Value inputs[] = {
            wrap(cpu, weight.data() + plan.weight_offset(g), {c_out_g, rows_g}),
            wrap(cpu, b, {q, rows_g}),
            bias ? wrap(cpu, bias.GetTensorData<float>() + plan.out_channel(g), {c_out_g, 1})
                 : Ort::Value(nullptr)};
        Ort::Value outputs[] = {wrap(cpu, dst, {c_out_g, q})};
        (bias ? gemm_bias : gemm).Invoke(raw, inputs, bias ? 3 : 2, outputs, 1);
        if (!plan.single_chunk()) {
          for (int64_t i = 0; i < c_out_g; ++i) std::copy_n(dst + i * q, q, out_g + i * P);
        }
      }
    });
  });
}

template <bool PositionSensitive>
OrtStatusPtr DeformRoIPoolCpu<PositionSensitive>::ComputeV2(OrtKernelContext* raw) {
  return status_of([&] {
    Ort::KernelContext ctx(raw);
    const RoIPoolCall call = roi_pool_call(ctx, attributes);
    const float* r = call.rois.GetTensorData<float>();
    const int64_t k_rois = call.rois_shape[0];
    check(kName, check_roi_batch_indices(r, k_rois, call.x_shape[0]));
    Ort::UnownedValue y = ctx.GetOutput(0, call.output_shape());
    column_loops().roi_forward(OrtParallel{ctx}, call.shape, call.x.GetTensorData<float>(), r,
                               data_or_null(call.offset), k_rois, y.GetTensorMutableData<float>());
  });
}

template struct DeformRoIPoolCpu<false>;
template struct DeformRoIPoolCpu<true>;

}  // namespace dcn::ort
