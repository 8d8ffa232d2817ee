"""A missing optional dependency names the extra that installs it."""

from __future__ import annotations

import sys

import pytest
import torch

from advface_fast.optional import EXTRAS, import_optional, missing_extra_message


@pytest.mark.parametrize("module", ["skimage.metrics", "audmetric", "onnxruntime"])
def test_missing_module_names_its_extra(module, monkeypatch):
    monkeypatch.setitem(sys.modules, module.split(".")[0], None)  # as if not installed
    if "." in module:
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ModuleNotFoundError, match=rf"pip install 'advface_fast\[{EXTRAS[module.split('.')[0]]}\]'"):
        import_optional(module)


def test_a_call_site_says_it_too(monkeypatch):
    from advface_fast.metrics import ssim_skimage

    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.delitem(sys.modules, "skimage.metrics", raising=False)
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ModuleNotFoundError, match=r"needed for SSIM\): pip install 'advface_fast\[eval\]'"):
        ssim_skimage(x, x)


def test_unknown_modules_and_present_ones():
    assert "not installed" in missing_extra_message("nosuchthing")
    assert import_optional("json").dumps([1]) == "[1]"
    with pytest.raises(ModuleNotFoundError, match="nosuchthing_xyz"):
        import_optional("nosuchthing_xyz")


def test_a_missing_optional_dependency_of_an_optional_module_names_its_extra(tmp_path, monkeypatch):
    (tmp_path / "needs_pyarrow_xyz.py").write_text("import pyarrow\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ModuleNotFoundError, match=r"'pyarrow' is not installed.*advface_fast\[ray\]"):
        import_optional("needs_pyarrow_xyz")
