"""The family registry (actors/models/__init__.py): one home per family, and generic code that names none."""

import ast
import importlib
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import gigacanvas
from gigacanvas.actors import models
from gigacanvas.actors.adapter import ModelAdapter
from gigacanvas.actors.models import Family, families, for_pipeline, for_scheme, load
from gigacanvas.errors import UsageError

ACTORS = Path(gigacanvas.__file__).parent / "actors"
# Everything under actors/ but the registry and the families' homes: what adding a family must not touch.
GENERIC = sorted(ACTORS.glob("*.py")) + [ACTORS / "models" / "tiny.py", ACTORS / "models" / "architectures.py"]
HOMES = {Path(importlib.import_module(home).__file__) for home in models.HOMES}


def _code_words(path: Path) -> list[str]:
    """The identifiers and string constants of a module's code: no comments, no docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words.append(node.name)
        elif isinstance(node, ast.alias):
            words.append(node.name)
        elif isinstance(node, ast.ImportFrom):
            words.append(node.module or "")
    return words


def _family_names() -> re.Pattern:
    """Whatever would name a family: its name and short name, pipelines, classes, key layouts, format."""
    names = set()
    for f in families():
        names |= {f.name, f.short, f.transformer_class, f.original_blocks, f.checkpoint_format, f.scheme.rstrip(":")}
        names |= set(f.pipelines)
    names.discard("")
    return re.compile("|".join(re.escape(n) for n in sorted(names)), re.IGNORECASE)


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(ACTORS)))
def test_generic_modules_name_no_family(path):
    assert path not in HOMES
    named = sorted({w for w in _code_words(path) if _family_names().search(w)})
    assert named == [], f"{path.name} names a family in its code: {named}; move it to the family's home"


def test_the_check_sees_a_family_name_in_code_but_not_in_comments_or_docstrings(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""SD3 in a docstring."""\n# sd3 in a comment\nx = f"{1} is an SD3 file"\n')
    assert [w for w in _code_words(module) if _family_names().search(w)] == [" is an SD3 file"]


def test_folders_are_dispatched_by_their_pipeline_class():
    assert for_pipeline("StableDiffusion3Pipeline", "/m").name == "sd3"
    assert for_pipeline("StableDiffusion3Img2ImgPipeline", "/m").name == "sd3"
    assert for_pipeline("FluxPipeline", "/m").name == "flux"


@pytest.mark.parametrize("class_name", ["StableDiffusionPipeline", None, ["StableDiffusion3Pipeline"], {"a": 1}])
def test_an_unknown_pipeline_is_one_line_listing_what_is_supported(class_name):
    with pytest.raises(UsageError) as caught:
        for_pipeline(class_name, "/models/m")
    name = class_name or "unknown"
    assert str(caught.value) == (
        f"model /models/m is a {name} folder; gigacanvas supports SD3/SD3.5, Flux.1 or SDXL diffusers folders "
        "(StableDiffusion3Pipeline, StableDiffusion3Img2ImgPipeline, FluxPipeline, StableDiffusionXLPipeline)"
    )


def test_an_unknown_pipeline_folder_is_refused_by_open_model(tmp_path):
    from gigacanvas.actors.loading import open_model

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(UsageError, match=r"^model .* is a StableDiffusionPipeline folder; gigacanvas supports SD3/SD3.5, Flux.1 or SDXL diffusers folders \(") as caught:
        open_model(str(tmp_path))
    assert "\n" not in str(caught.value)


def test_stand_ins_are_found_by_their_prefix():
    assert for_scheme("simulated:0.5").name == "simulated"
    assert for_scheme("/models/sd35") is None


def test_an_unknown_family_is_one_line():
    with pytest.raises(UsageError, match=r"^model family 'nope' is unknown; gigacanvas knows sd3, flux, sdxl, simulated$"):
        models.family("nope")


def test_every_family_s_references_resolve():
    for f in families():
        assert issubclass(f.adapter_class(), ModelAdapter), f.name
        assert (f.pipelines and f.components and f.sizes) or (f.scheme and f.describe), f.name
        for ref in (f.tiny_pipeline, f.convert_original):
            assert not ref or callable(load(ref)), ref
        if f.architectures:
            assert all(c["_class_name"] == f.transformer_class for c in load(f.architectures).values())


def test_the_homes_import_neither_torch_nor_diffusers():
    """Dispatching imports every home: what is heavy waits behind a "module:attribute" reference."""
    code = (
        "import sys; from gigacanvas.actors import models; models.families(); "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _FakeAdapter(ModelAdapter):
    make_scheduler = encode_prompt = predict = decode = decode_stages = None


def test_a_new_family_is_one_home_and_one_line(monkeypatch):
    """What adding Flux will do: a home module with a FAMILY, listed in HOMES; nothing else changes."""
    home = types.ModuleType("fake_family_home")
    home.FakeAdapter = _FakeAdapter
    home.FAMILY = Family(
        name="fake", label="Fake.1", short="Fake", adapter="fake_family_home:FakeAdapter", pipelines=("FakePipeline",)
    )
    monkeypatch.setitem(sys.modules, "fake_family_home", home)
    monkeypatch.setattr(models, "HOMES", (*models.HOMES, "fake_family_home"))
    models.families.cache_clear()
    try:
        assert for_pipeline("FakePipeline", "/m").name == "fake"
        assert models.supported() == "SD3/SD3.5, Flux.1, SDXL or Fake.1"
        with pytest.raises(UsageError, match=r"supports SD3/SD3.5, Flux.1, SDXL or Fake.1 diffusers folders \(.*, FakePipeline\)$"):
            for_pipeline("OtherPipeline", "/m")
        from gigacanvas.actors.adapter import ModelInfo
        from gigacanvas.actors.loading import load_adapter

        info = ModelInfo("fake", "/m", "f", 4, 8, 2, 1024)
        assert isinstance(load_adapter(info, "cpu"), _FakeAdapter)
    finally:
        monkeypatch.undo()
        models.families.cache_clear()
