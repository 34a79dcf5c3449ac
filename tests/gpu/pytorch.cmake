# The PyTorch suite (label gpu): scripts/pytorch-suite.sh runs the CUDA
# runtime program and tests/gpu/pytorch/torch_suite.py natively and through
# Wooly and compares the results. It exits 77 (CTest skip) without a GPU or
# without an importable torch. See docs/testing.md, "PyTorch suite".
include(${PROJECT_SOURCE_DIR}/tests/runtime/runtime.cmake)

add_test(NAME gpu.pytorch
  COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/pytorch-suite.sh ${CMAKE_BINARY_DIR})
set_tests_properties(gpu.pytorch PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 1200)

# The suite's own plumbing, checked in CI without torch or a GPU: compare.py
# on synthetic results, the case table against torch_suite.py's cases.
add_test(NAME pytorch_suite.compare_test
  COMMAND ${Python3_EXECUTABLE} -B ${CMAKE_CURRENT_LIST_DIR}/pytorch/compare_test.py)
set_tests_properties(pytorch_suite.compare_test PROPERTIES LABELS unit TIMEOUT 60)
