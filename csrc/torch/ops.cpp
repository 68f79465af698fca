// The dcn operator library. Kernels register per backend (CPU, CUDA, Autograd, Autocast) in their
// own files; shape functions for torch.export / torch.compile live in model/ops.py.
#include <torch/library.h>

#include <string>

#include "../cpu/isa.h"
#include "op_schemas.h"

TORCH_LIBRARY(dcn, m) {
  dcn::define_op_schemas(m);
  // Which CPU loop variant this process runs (DCN_CPU_ISA forces one; see csrc/cpu/isa.h).
  m.def("_cpu_isa() -> str", [] { return std::string(dcn::isa_name(dcn::selected_isa())); });
}
