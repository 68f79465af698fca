// CUDA kernels of the ORT ops: the column kernels and RoI kernels of csrc/cuda (the same ones the
// PyTorch ops launch) on ONNX Runtime's compute stream, and cuBLAS for the GEMM.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "../../csrc/cuda/column_kernels.cuh"
#include "../../csrc/cuda/roi_pool_kernels.cuh"
#include "ops_cuda.h"

namespace dcn::ort {
namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Ort::Exception(std::string(what) + ": " + cudaGetErrorString(e), ORT_RUNTIME_EXCEPTION);
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Ort::Exception(std::string(what) + ": cuBLAS status " + std::to_string(int(s)),
                         ORT_RUNTIME_EXCEPTION);
}

// One cuBLAS handle per (thread, device), bound to the caller's stream on each use.
cublasHandle_t cublas_for(cudaStream_t stream) {
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  cublasHandle_t& h = handles[device];
  if (h == nullptr) check_cublas(cublasCreate(&h), "cublasCreate");
  check_cublas(cublasSetStream(h, stream), "cublasSetStream");
  return h;
}

// Scratch memory from ONNX Runtime's allocator for the kernel's device.
struct Scratch {
  OrtAllocator* allocator;
  std::vector<void*> blocks;
  ~Scratch() {
    for (void* p : blocks) allocator->Free(allocator, p);
  }
  float* floats(size_t n) {
    void* p = allocator->Alloc(allocator, std::max<size_t>(n, 1) * sizeof(float));
    if (p == nullptr) throw Ort::Exception("DeformConv2d: out of device memory", ORT_FAIL);
    blocks.push_back(p);
    return static_cast<float*>(p);
  }
};

OrtAllocator* device_allocator(const Ort::KernelContext& ctx, const Ort::ConstValue& like) {
  const OrtMemoryInfo* info = like.GetTensorMemoryInfo();
  OrtAllocator* allocator = ctx.GetAllocator(*info);
  if (allocator == nullptr) throw Ort::Exception("DeformConv2d: no device allocator", ORT_FAIL);
  return allocator;
}

__global__ void fill_bias_kernel(float* out, const float* bias, int64_t n, int64_t c, int64_t p) {
  DCN_CUDA_KERNEL_LOOP(i, n * c * p) { out[i] = bias != nullptr ? bias[i / p % c] : 0.f; }
}

constexpr int64_t kMaxColumnEntries = int64_t(1) << 24;

}  // namespace

OrtStatusPtr DeformConv2dCuda::ComputeV2(OrtKernelContext* raw) {
  return status_of([&] {
    Ort::KernelContext ctx(raw);
    const Ort::ConstValue x = ctx.GetInput(0), w = ctx.GetInput(1), offset = ctx.GetInput(2);
    const Ort::ConstValue bias = optional_input(ctx, 3), mask = optional_input(ctx, 4);
    const Shape bias_shape = bias ? shape_of(bias) : Shape();
    const Shape mask_shape = mask ? shape_of(mask) : Shape();
    const DeformConvShape s = checked_deform_conv_shape(
        attributes, shape_of(x), shape_of(w), shape_of(offset), bias ? &bias_shape : nullptr,
        mask ? &mask_shape : nullptr);
    const int64_t c_out = shape_of(w)[0], P = s.out_size(), CK = s.column_width();
    const int64_t c_out_g = c_out / s.groups, rows_g = CK / s.groups;
    Ort::UnownedValue y = ctx.GetOutput(0, {s.batch, c_out, s.out_h, s.out_w});
    float* out = y.GetTensorMutableData<float>();
    if (s.batch == 0) return;
    cudaStream_t stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    Scratch scratch{device_allocator(ctx, x), {}};

    float* image = scratch.floats(size_t(s.batch) * s.plane_size() * s.channels);
    transpose_kernel<<<cuda_blocks(int64_t(s.batch) * s.plane_size() * s.channels), kCudaThreads,
                       0, stream>>>(x.GetTensorData<float>(), s.batch, s.channels,
                                    s.plane_size(), image);
    float* weight = scratch.floats(size_t(c_out) * rows_g);
    transpose_kernel<<<cuda_blocks(c_out * rows_g), kCudaThreads, 0, stream>>>(
        w.GetTensorData<float>(), c_out, s.channels_per_group(), s.kernel_size(), weight);
    fill_bias_kernel<<<cuda_blocks(int64_t(s.batch) * c_out * P), kCudaThreads, 0, stream>>>(
        out, bias ? bias.GetTensorData<float>() : nullptr, s.batch, c_out, P);
    check_cuda(cudaGetLastError(), "DeformConv2d launch");

    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(P, kMaxColumnEntries / CK));
    float* col = scratch.floats(size_t(chunk) * CK);
    cublasHandle_t blas = cublas_for(stream);
    const float one = 1.f;
    for (int64_t n = 0; n < s.batch; ++n) {
      for (int64_t p0 = 0; p0 < P; p0 += chunk) {
        const int64_t q = std::min(chunk, P - p0);
        im2col_kernel<float, float><<<cuda_blocks(q * CK), kCudaThreads, 0, stream>>>(
            image, offset.GetTensorData<float>(), mask ? mask.GetTensorData<float>() : nullptr, s,
            n * P + p0, q, col);
        check_cuda(cudaGetLastError(), "im2col launch");
        // Row-major out[n][g] (C_out/groups x q, row stride P) += W_g x col_g^T, i.e. in cuBLAS'
        // column-major terms out^T (q x C_out/groups) = col_g (q x rows_g) x W_g^T.
        for (int64_t g = 0; g < s.groups; ++g) {
          check_cublas(
              cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(q), int(c_out_g), int(rows_g), &one,
                          col + g * rows_g, int(CK), weight + g * c_out_g * rows_g, int(rows_g),
                          &one, out + (n * c_out + g * c_out_g) * P + p0, int(P)),
              "cublasSgemm");
        }
      }
    }
    // The scratch blocks go back to the allocator on return: finish using them first.
    check_cuda(cudaStreamSynchronize(stream), "DeformConv2d");
  });
}

template <bool PositionSensitive>
OrtStatusPtr DeformRoIPoolCuda<PositionSensitive>::ComputeV2(OrtKernelContext* raw) {
  return status_of([&] {
    Ort::KernelContext ctx(raw);
    const Ort::ConstValue x = ctx.GetInput(0), rois = ctx.GetInput(1);
    const Ort::ConstValue offset = optional_input(ctx, 2);
    const Shape offset_shape = offset ? shape_of(offset) : Shape();
    const Shape x_shape = shape_of(x), rois_shape = shape_of(rois);
    const RoIPoolShape s = checked_roi_pool_shape(attributes, x_shape, rois_shape,
                                                  offset ? &offset_shape : nullptr);
    cudaStream_t stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    // Batch indices decide which memory is read: check them on the host first.
    std::vector<float> host_rois(static_cast<size_t>(rois_shape[0]) * 5);
    if (!host_rois.empty()) {
      check_cuda(cudaMemcpyAsync(host_rois.data(), rois.GetTensorData<float>(),
                                 host_rois.size() * sizeof(float), cudaMemcpyDeviceToHost, stream),
                 "copy rois");
      check_cuda(cudaStreamSynchronize(stream), "copy rois");
    }
    check(kName, check_roi_batch_indices(host_rois.data(), rois_shape[0], x_shape[0]));
    Ort::UnownedValue y = ctx.GetOutput(0, {rois_shape[0], s.out_channels, s.pooled_h, s.pooled_w});
    const int64_t count = rois_shape[0] * s.out_channels * s.pooled_h * s.pooled_w;
    if (count == 0) return;
    roi_pool_forward_kernel<float, float><<<cuda_blocks(count), kCudaThreads, 0, stream>>>(
        x.GetTensorData<float>(), rois.GetTensorData<float>(),
        offset ? offset.GetTensorData<float>() : nullptr, s, count,
        y.GetTensorMutableData<float>());
    check_cuda(cudaGetLastError(), "RoI pooling launch");
  });
}

template struct DeformRoIPoolCuda<false>;
template struct DeformRoIPoolCuda<true>;

}  // namespace dcn::ort
