// The library's one entry point: RegisterCustomOps adds the custom domain "dcn" (version 1) with
// DeformConv2d, DeformRoIPool and PSDeformRoIPool for the CPU execution provider (float32) and,
// when built with CUDA, the CUDA execution provider (float32 and float16). The CPU emulation of
// the CUDA kernels (-DDCN_CUDA_ON_CPU) registers those alone, on the CPU execution provider.
#include <memory>
#include <mutex>
#include <vector>

#ifndef DCN_CUDA_ON_CPU
#include "ops_cpu.h"
#endif
#ifdef DCN_WITH_CUDA
#include "ops_cuda.h"
#endif

namespace dcn::ort {
namespace {

template <typename Kernel>
struct Op : Ort::CustomOpBase<Op<Kernel>, Kernel, /*WithStatus=*/true> {
  const char* GetName() const { return Kernel::kName; }
  const char* GetExecutionProviderType() const { return Kernel::kProvider; }
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return status_of([&] { *kernel = new Kernel(info); });
  }
  size_t GetInputTypeCount() const { return Kernel::kInputs; }
  ONNXTensorElementDataType GetInputType(size_t) const { return Kernel::kType; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i < Kernel::kRequiredInputs ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return Kernel::kType; }
};

// Ops and domains must outlive every session that uses them: they live for the process.
struct Registry {
  std::mutex lock;
  std::vector<std::unique_ptr<Ort::CustomOpDomain>> domains;
#ifndef DCN_CUDA_ON_CPU
  Op<DeformConv2dCpu> deform_conv2d_cpu;
  Op<DeformRoIPoolCpu<false>> deform_roi_pool_cpu;
  Op<DeformRoIPoolCpu<true>> ps_deform_roi_pool_cpu;
#endif
#ifdef DCN_WITH_CUDA
  Op<DeformConv2dCuda<float>> deform_conv2d_cuda;
  Op<DeformRoIPoolCuda<float, false>> deform_roi_pool_cuda;
  Op<DeformRoIPoolCuda<float, true>> ps_deform_roi_pool_cuda;
  Op<DeformConv2dCuda<Ort::Float16_t>> deform_conv2d_cuda_half;
  Op<DeformRoIPoolCuda<Ort::Float16_t, false>> deform_roi_pool_cuda_half;
  Op<DeformRoIPoolCuda<Ort::Float16_t, true>> ps_deform_roi_pool_cuda_half;
#endif
};

Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace
}  // namespace dcn::ort

extern "C" OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                     const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) return nullptr;  // a runtime older than our headers: cannot report
  Ort::InitApi(api);
  using namespace dcn::ort;
  return status_of([&] {
    Registry& r = registry();
    std::lock_guard<std::mutex> guard(r.lock);
    auto domain = std::make_unique<Ort::CustomOpDomain>("dcn");
#ifndef DCN_CUDA_ON_CPU
    domain->Add(&r.deform_conv2d_cpu);
    domain->Add(&r.deform_roi_pool_cpu);
    domain->Add(&r.ps_deform_roi_pool_cpu);
#endif
#ifdef DCN_WITH_CUDA
    domain->Add(&r.deform_conv2d_cuda);
    domain->Add(&r.deform_roi_pool_cuda);
    domain->Add(&r.ps_deform_roi_pool_cuda);
    domain->Add(&r.deform_conv2d_cuda_half);
    domain->Add(&r.deform_roi_pool_cuda_half);
    domain->Add(&r.ps_deform_roi_pool_cuda_half);
#endif
    Ort::UnownedSessionOptions(options).Add(*domain);
    r.domains.push_back(std::move(domain));
  });
}
