"""The AdvFace loop run through the real attack libraries, beside the "-style" loops that copy them.

- **advertorch 0.2.3** (its last release, 2020): the loop of ``LinfPGDAttack``,
  ``advertorch.attacks.iterative_projected_gradient.perturb_iterative``, takes the loss, the start
  and the box as arguments, so it runs AdvFace unchanged: L1 loss (sum) against the shadow image,
  maximised, ``delta_init`` = the shared random start, no box (``clip_min = clip_max = None``).
  The package no longer imports on torch >= 1.9: ``advertorch.attacks`` imports ``zero_gradients``
  from ``torch.autograd.gradcheck``, which torch removed; :func:`import_advertorch` installs the
  shim users apply (the removed function) first. ``import advertorch`` also imports torchvision
  (its JPEG defense builds ``transforms.ToPILImage()`` and ``ToTensor()`` at import), and no
  torchvision build matches torch 2.13.0+cpu on these machines (PyPI's 0.28.0 fails to register
  its operators against it); where torchvision does not import, a stand-in module with those two
  names is in ``sys.modules`` for the import only. The PGD loop calls neither shim.
- **torchattacks 3.5.1**: ``PGD.forward`` fixes the loss (cross-entropy on logits) and clamps
  every step to images in [0, 1], so AdvFace on features needs a subclass that replaces
  ``forward`` with the same loop on the L1 loss and without the [0, 1] box: what a torchattacks
  user writes. It runs through the package's ``Attack.__call__`` (the model's train/eval mode
  saved and restored around the attack).

Install (benchmarks only): ``pip install --no-deps -r benchmarks/requirements-real-packages.txt``.
``--no-deps`` because torchattacks' metadata pins ``requests~=2.25.1`` and asks for torchvision,
neither used by PGD: with its dependencies pip would downgrade requests and fetch a torchvision
built for another torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType

import torch
from torch import nn

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z (B, D), noise (B, D) in [-1, 1)) -> protected z


def unavailable_reason(name: str) -> str | None:
    """``None`` if the real package ``name`` (``torchattacks`` or ``advertorch``) runs here, else why not."""
    try:
        if name == "torchattacks":
            import torchattacks  # noqa: F401
        elif name == "advertorch":
            import_advertorch()
        else:
            raise ValueError(f"unknown package {name!r}")
    except ImportError as exc:
        return f"{name} does not import ({exc}); pip install --no-deps -r benchmarks/requirements-real-packages.txt"
    return None


def _shim_zero_gradients() -> None:
    """torch.autograd.gradcheck.zero_gradients, removed in torch 1.9, as advertorch imports it."""
    # the module: `import torch.autograd.gradcheck as m` binds the function torch.autograd re-exports
    gradcheck = importlib.import_module("torch.autograd.gradcheck")
    if hasattr(gradcheck, "zero_gradients"):
        return

    def zero_gradients(x: object) -> None:
        if isinstance(x, torch.Tensor):
            if x.grad is not None:
                x.grad.detach_()
                x.grad.zero_()
        else:
            for elem in x:  # type: ignore[attr-defined]
                zero_gradients(elem)

    gradcheck.zero_gradients = zero_gradients


def import_advertorch() -> ModuleType:
    """``advertorch.attacks.iterative_projected_gradient``, imported with the shims the module
    docstring describes (ImportError if advertorch is not installed)."""
    _shim_zero_gradients()
    try:
        import torchvision  # noqa: F401

        stand_in = None
    except Exception:  # absent, or a build for another torch (RuntimeError when its operators fail to register)
        sys.modules.pop("torchvision", None)
        stand_in = ModuleType("torchvision")
        stand_in.transforms = ModuleType("torchvision.transforms")  # type: ignore[attr-defined]
        stand_in.transforms.ToPILImage = lambda *a, **k: None  # type: ignore[attr-defined]
        stand_in.transforms.ToTensor = lambda *a, **k: None  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": stand_in, "torchvision.transforms": stand_in.transforms})
    try:
        return importlib.import_module("advertorch.attacks.iterative_projected_gradient")
    finally:
        if stand_in is not None:
            for name in ("torchvision", "torchvision.transforms"):
                sys.modules.pop(name, None)


def advertorch_pgd(decoder: nn.Module, eps: float, alpha: float, steps: int) -> Attack:
    """advertorch's PGD loop on the AdvFace objective (see the module docstring)."""
    perturb_iterative = import_advertorch().perturb_iterative

    loss_fn = nn.L1Loss(reduction="sum")

    def attack(z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = decoder(z)
        start = (eps * noise).clone()
        out = perturb_iterative(
            z, target, decoder, steps, eps, alpha, loss_fn, delta_init=start, clip_min=None, clip_max=None
        )
        decoder.zero_grad(set_to_none=True)  # perturb_iterative leaves the weight gradients it accumulated
        return out.detach()

    return attack


def torchattacks_pgd(decoder: nn.Module, eps: float, alpha: float, steps: int) -> Attack:
    """torchattacks' PGD with ``forward`` replaced for AdvFace (see the module docstring)."""
    import torchattacks

    class AdvFacePGD(torchattacks.PGD):
        """``images`` are the stored features (B, D), ``labels`` the shadow images S(z)."""

        start: torch.Tensor

        def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            z = images.clone().detach().to(self.device)
            target = labels.clone().detach().to(self.device)
            loss = nn.L1Loss(reduction="sum")
            adv = (z + self.start).detach()  # torchattacks draws uniform(-eps, eps); here the shared start
            for _ in range(self.steps):
                adv.requires_grad = True
                cost = loss(self.get_logits(adv), target)
                grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
                adv = adv.detach() + self.alpha * grad.sign()
                delta = torch.clamp(adv - z, min=-self.eps, max=self.eps)
                adv = (z + delta).detach()  # PGD.forward clamps to [0, 1] here: no such box for features
            return adv

    pgd = AdvFacePGD(decoder, eps=eps, alpha=alpha, steps=steps, random_start=True)

    def attack(z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = decoder(z)
        pgd.start = eps * noise
        return pgd(z, target)

    return attack
