"""The ops and kernels wing: reference, Triton and C++/CUDA ops, their build, wheel and tools."""
