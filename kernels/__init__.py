"""Triton kernels of advface_fast, installed as ``advface_fast.kernels`` (setup.py ``package_dir``).

The fused MLP-decoder engine (forward GEMM + activation epilogues, the fused last layer with the
L1 sign, the input-gradient GEMM with the clipped sign step) lands here; until it does, the
``triton`` backend reports itself unavailable and ``auto`` runs the torch reference.
"""
