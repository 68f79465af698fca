// PyTorch-side CUDA includes of the torch kernel files (stream, device guard, launch checks).
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
