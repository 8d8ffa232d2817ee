"""Triton kernels of advface_fast, installed as ``advface_fast.kernels`` (setup.py ``package_dir``).

The fused MLP-decoder engine of ``backend="triton"``: ``mlp_gemm.py`` (the pointer GEMM kernel
with the loop's epilogues and each op's ``*_ref``), ``mlp_gemm_tma.py`` (the TMA/persistent
variant for Hopper and newer), ``pgd_mlp.py`` (weight plans, the loop, its CUDA graph),
``_common.py`` (activations, epilogue math, configs), ``aot_check.py`` (compiles for sm_90
without a GPU).
"""
