// CUDA kernels of the ORT ops: the column kernels and RoI kernels of csrc/cuda (the same ones the
// PyTorch ops launch) on ONNX Runtime's compute stream, and cuBLAS for the GEMM. With
// -DDCN_CUDA_ON_CPU this file compiles as C++ against csrc/emulation instead (cuBLAS a reference
// GEMM with cuBLAS's arguments) and its kernels run on the CPU execution provider.
#ifdef DCN_CUDA_ON_CPU
#include "../../csrc/emulation/cublas_on_cpu.h"
#else
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <mutex>
#include <unordered_map>
#include <vector>

#include "../../csrc/common/column_plan.h"
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

// cuBLAS handles, one per (thread, device) in use. A thread leases its handles from a
// process-wide pool and returns them when it exits, so threads that come and go (ORT's thread
// pools, a service's workers) reuse handles instead of leaking one each; the pool is bounded by
// the peak number of threads. Handles are never destroyed: at process exit the CUDA context
// may already be gone, and destroying a handle then can crash (PyTorch keeps its pool for the
// same reason).
class CublasPool {
 public:
  cublasHandle_t acquire(int device) {
    {
      std::lock_guard<std::mutex> guard(lock_);
      std::vector<cublasHandle_t>& free = free_[device];
      if (!free.empty()) {
        cublasHandle_t h = free.back();
        free.pop_back();
        return h;
      }
    }
    cublasHandle_t h = nullptr;
    check_cublas(cublasCreate(&h), "cublasCreate");
    return h;
  }
  void release(int device, cublasHandle_t h) {
    std::lock_guard<std::mutex> guard(lock_);
    free_[device].push_back(h);
  }

 private:
  std::mutex lock_;
  std::unordered_map<int, std::vector<cublasHandle_t>> free_;
};

CublasPool& cublas_pool() {
  static CublasPool* pool = new CublasPool();  // outlives every thread's lease
  return *pool;
}

struct CublasLease {
  std::unordered_map<int, cublasHandle_t> handles;
  ~CublasLease() {
    for (const auto& [device, h] : handles) cublas_pool().release(device, h);
  }
};

// The calling thread's handle for the current device, bound to `stream`.
cublasHandle_t cublas_for(cudaStream_t stream) {
  thread_local CublasLease lease;
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  auto it = lease.handles.find(device);
  if (it == lease.handles.end()) {
    it = lease.handles.emplace(device, cublas_pool().acquire(device)).first;
  }
  check_cublas(cublasSetStream(it->second, stream), "cublasSetStream");
  return it->second;
}

// Makes the device of a kernel's inputs current for the kernel's lifetime (ORT may call a
// kernel from a thread whose current device is another GPU), and restores the caller's.
class DeviceGuard {
 public:
  explicit DeviceGuard(const Ort::ConstValue& like) {
    device_ = like.GetTensorMemoryInfo().GetDeviceId();
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device_ != previous_) check_cuda(cudaSetDevice(device_), "cudaSetDevice");
  }
  ~DeviceGuard() {
    if (device_ != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_ = 0, previous_ = 0;
};

// Scratch memory from ONNX Runtime's allocator for the device of `like`. The kernel context
// hands out a new allocator object on each call, which the API asks us to release.
class Scratch {
 public:
  Scratch(const Ort::KernelContext& ctx, const Ort::ConstValue& like) {
    const OrtMemoryInfo* info = like.GetTensorMemoryInfo();
    allocator_ = ctx.GetAllocator(*info);
    if (allocator_ == nullptr) throw Ort::Exception("DeformConv2d: no device allocator", ORT_FAIL);
  }
  ~Scratch() {
    for (void* p : blocks_) allocator_->Free(allocator_, p);
    Ort::GetApi().ReleaseAllocator(allocator_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* alloc(size_t n) {
    void* p = allocator_->Alloc(allocator_, std::max<size_t>(n, 1) * sizeof(T));
    if (p == nullptr) throw Ort::Exception("DeformConv2d: out of device memory", ORT_FAIL);
    blocks_.push_back(p);
    return static_cast<T*>(p);
  }

 private:
  OrtAllocator* allocator_ = nullptr;
  std::vector<void*> blocks_;
};

// Device element type of an ONNX Runtime tensor type.
template <typename T>
struct Device {
  using type = T;
  static constexpr cudaDataType_t blas = CUDA_R_32F;
};
template <>
struct Device<Ort::Float16_t> {
  using type = __half;
  static constexpr cudaDataType_t blas = CUDA_R_16F;
};

template <typename T>
const typename Device<T>::type* device_data(const Ort::ConstValue& v) {
  return v ? reinterpret_cast<const typename Device<T>::type*>(v.GetTensorData<T>()) : nullptr;
}

template <typename D>
__global__ void fill_bias_kernel(D* out, const D* bias, int64_t n, int64_t c, int64_t p) {
  DCN_CUDA_KERNEL_LOOP(i, n * c * p) { out[i] = bias != nullptr ? bias[i / p % c] : D(0.f); }
}

}  // namespace

template <typename T>
OrtStatusPtr DeformConv2dCuda<T>::ComputeV2(OrtKernelContext* raw) {
  using D = typename Device<T>::type;
  return status_of([&] {
    Ort::KernelContext ctx(raw);
    DeformConvCall call = deform_conv_call(ctx, attributes);
    const DeformConvShape& s = call.shape;
    const Ort::ConstValue &x = call.x, &w = call.w, &offset = call.offset;
    const Ort::ConstValue &bias = call.bias, &mask = call.mask;
    const int64_t c_out = call.c_out, P = s.out_size(), CK = s.column_width();
    const ColumnPlan plan(s, c_out, /*per_image=*/true);
    const int64_t c_out_g = plan.c_out_g, rows_g = plan.rows_g;
    D* out = reinterpret_cast<D*>(call.y.GetTensorMutableData<T>());
    if (s.batch == 0) return;
    const DeviceGuard device(x);
    cudaStream_t stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    Scratch scratch(ctx, x);

    D* image = scratch.alloc<D>(size_t(s.batch) * s.plane_size() * s.channels);
    launch_kernel(transpose_kernel<D>, int64_t(s.batch) * s.plane_size() * s.channels, stream,
                  device_data<T>(x), s.batch, s.channels, s.plane_size(), image);
    const WeightTranspose wt = column_weight_transpose(s, c_out);
    D* weight = scratch.alloc<D>(size_t(c_out) * rows_g);
    launch_kernel(transpose_kernel<D>, c_out * rows_g, stream, device_data<T>(w), wt.batch, wt.rows,
                  wt.cols, weight);
    launch_kernel(fill_bias_kernel<D>, int64_t(s.batch) * c_out * P, stream, out,
                  device_data<T>(bias), s.batch, c_out, P);
    check_cuda(cudaGetLastError(), "DeformConv2d launch");

    D* col = scratch.alloc<D>(size_t(plan.buffer_entries()));
    cublasHandle_t blas = cublas_for(stream);
    const float one = 1.f;
    plan.for_each_chunk([&](const ColumnChunk& k) {
      launch_kernel(im2col_kernel<D, float>, k.q * CK, stream, image, device_data<T>(offset),
                    device_data<T>(mask), s, k.j0, k.q, col);
      check_cuda(cudaGetLastError(), "im2col launch");
      // Row-major out[n][g] (C_out/groups x q, row stride P) += W_g x col_g^T, i.e. in cuBLAS'
      // column-major terms out^T (q x C_out/groups) = col_g (q x rows_g) x W_g^T; float32
      // accumulation for half storage.
      for (int64_t g = 0; g < s.groups; ++g) {
        check_cublas(
            cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, int(k.q), int(c_out_g), int(rows_g), &one,
                         col + plan.column_offset(g), Device<T>::blas, int(CK),
                         weight + plan.weight_offset(g), Device<T>::blas, int(rows_g), &one,
                         out + (k.n * c_out + plan.out_channel(g)) * P + k.p0, Device<T>::blas,
                         int(P), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
      }
    });
    // The scratch blocks go back to the allocator on return: finish using them first.
    check_cuda(cudaStreamSynchronize(stream), "DeformConv2d");
  });
}

template <typename T, bool PositionSensitive>
OrtStatusPtr DeformRoIPoolCuda<T, PositionSensitive>::ComputeV2(OrtKernelContext* raw) {
  using D = typename Device<T>::type;
  return status_of([&] {
    Ort::KernelContext ctx(raw);
    const RoIPoolCall call = roi_pool_call(ctx, attributes);
    const Ort::ConstValue &x = call.x, &rois = call.rois, &offset = call.offset;
    const Shape &x_shape = call.x_shape, &rois_shape = call.rois_shape;
    const RoIPoolShape& s = call.shape;
    const DeviceGuard device(x);
    cudaStream_t stream = static_cast<cudaStream_t>(ctx.GetGPUComputeStream());
    // Batch indices decide which memory is read: check them on the host first.
    std::vector<T> host(static_cast<size_t>(rois_shape[0]) * 5);
    if (!host.empty()) {
      check_cuda(cudaMemcpyAsync(host.data(), rois.GetTensorData<T>(), host.size() * sizeof(T),
                                 cudaMemcpyDeviceToHost, stream),
                 "copy rois");
      check_cuda(cudaStreamSynchronize(stream), "copy rois");
    }
    std::vector<float> host_rois(host.size());
    for (size_t i = 0; i < host.size(); ++i) host_rois[i] = static_cast<float>(host[i]);
    check(kName, check_roi_batch_indices(host_rois.data(), rois_shape[0], x_shape[0]));
    Ort::UnownedValue y = ctx.GetOutput(0, call.output_shape());
    const int64_t count = rois_shape[0] * s.out_channels * s.pooled_h * s.pooled_w;
    if (count == 0) return;
    launch_kernel(roi_pool_forward_kernel<D, float>, count, stream, device_data<T>(x),
                  device_data<T>(rois), device_data<T>(offset), s, count,
                  reinterpret_cast<D*>(y.GetTensorMutableData<T>()));
    check_cuda(cudaGetLastError(), "RoI pooling launch");
  });
}

template struct DeformConv2dCuda<float>;
template struct DeformConv2dCuda<Ort::Float16_t>;
template struct DeformRoIPoolCuda<float, false>;
template struct DeformRoIPoolCuda<float, true>;
template struct DeformRoIPoolCuda<Ort::Float16_t, false>;
template struct DeformRoIPoolCuda<Ort::Float16_t, true>;
}  // namespace dcn::ort
