// mdn_fast._C's schemas (namespace mdn_fast) and its Python module. The CPU implementations register
// from the op files (entity_attention_op.cpp, routed_merge_op.cpp); the CUDA ones from the same files
// built into mdn_fast._C_cuda (cuda_module.cpp). Python's limited API only (abi3 wheels).
#include <Python.h>

#include <string>

#include "../common/limits.h"
#include "stable_ref.h"

// The same strings are mdn_fast/ops/_schemas.py (the Triton ops use them; a test compares the two).
STABLE_TORCH_LIBRARY(mdn_fast, m) {
  m.def("entity_attention_fwd(Tensor q, Tensor k, Tensor v, int[] axes, Tensor? mask, float scale) -> (Tensor, Tensor)");
  m.def("entity_attention_bwd(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor lse, int[] axes, Tensor? mask, "
        "float scale) -> (Tensor, Tensor, Tensor)");
  m.def("routed_merge_fwd(Tensor x_st, Tensor x_ts, Tensor weight, Tensor bias, float tau, Tensor? mask) -> "
        "(Tensor, Tensor)");
  m.def("routed_merge_bwd(Tensor grad_y, Tensor? grad_alpha, Tensor x_st, Tensor x_ts, Tensor weight, "
        "Tensor alpha, float tau, Tensor? mask) -> (Tensor, Tensor, Tensor, Tensor)");
}

namespace {

// What this library was built with, for `python -m mdn_fast.info`: "key=value" lines (the CUDA library
// adds its own: cuda=1, cuda_archs, cuda_runtime).
std::string build_info() {
  std::string s = "cpu=1\nabi=stable\nmax_k=" + std::to_string(mdn::kMaxK) + "\nmax_t=" + std::to_string(mdn::kMaxT) +
                  "\nmax_dh=" + std::to_string(mdn::kMaxDh) + "\nmax_paths=" + std::to_string(mdn::kMaxPaths);
#ifdef MDN_FAST_CUDA_MAJOR
  s += "\ncuda_major=" + std::to_string(MDN_FAST_CUDA_MAJOR);  // what mdn_fast._C_cuda was built for
#endif
  return s;
}

}  // namespace

// `import mdn_fast._C` loads this library (running the registrations); BUILD_INFO is its only attribute.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "mdn_fast C++ ops (torch.ops.mdn_fast)", -1,
                                   nullptr, nullptr, nullptr, nullptr, nullptr};
  PyObject* m = PyModule_Create(&module_def);
  if (m && PyModule_AddStringConstant(m, "BUILD_INFO", build_info().c_str()) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
