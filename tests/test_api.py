"""The public API as a reader meets it: one numpydoc docstring per function, written
where the function is defined, and NumPy twins that take exactly the same arguments.

* Every function in ``fastloss.__all__`` has a docstring with a summary line, a
  Parameters section naming each parameter, a Returns section unless it returns None,
  and ``out`` described in NumPy's words.
* Every twin in ``fastloss.fallback`` has the public function's parameters (names,
  kinds, defaults) and a one-line docstring pointing to it, so nothing is documented
  twice.
"""
import inspect
import re

import pytest

import fastloss
import fastloss.fallback

PUBLIC = sorted(name for name in fastloss.__all__
                if inspect.isfunction(getattr(fastloss, name)))
TWINS = sorted(fastloss.fallback.__all__)


def numpydoc_sections(doc):
    """``{section title: [lines]}`` of a numpydoc docstring; the summary is ``""``."""
    lines = inspect.cleandoc(doc).splitlines()
    sections, title = {"": []}, ""
    for line, underline in zip(lines, lines[1:] + [""]):
        if line.strip() and re.fullmatch(r"-{3,}", underline.strip()):
            title = line.strip()
            sections[title] = []
        elif not re.fullmatch(r"-{3,}", line.strip()):
            sections[title].append(line)
    return sections


def documented_names(lines):
    """Parameter names of a Parameters section: ``name : type`` or ``a, b, c`` lines."""
    names = set()
    for line in lines:
        if line and not line[0].isspace():
            names.update(n.strip() for n in line.split(" : ")[0].split(","))
    return names


def test_every_public_function_is_listed():
    assert len(PUBLIC) == len(fastloss.__all__) - 2   # less "fallback" and "__version__"
    assert set(TWINS) <= set(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_docstring_is_numpydoc(name):
    func = getattr(fastloss, name)
    doc = func.__doc__
    assert doc and doc.strip(), f"{name} has no docstring"
    sections = numpydoc_sections(doc)
    assert sections[""] and sections[""][0].strip(), f"{name}: no summary line"
    unknown = set(sections) - {"", "Parameters", "Returns", "Raises", "Warns", "Notes",
                               "See Also", "Examples"}
    assert not unknown, f"{name}: sections numpydoc does not know: {unknown}"
    signature = inspect.signature(func)
    params = list(signature.parameters)
    if params:
        assert "Parameters" in sections, f"{name}: no Parameters section"
        missing = set(params) - documented_names(sections["Parameters"])
        assert not missing, f"{name}: parameters not documented: {sorted(missing)}"
    if signature.return_annotation not in ("None", None):
        assert "Returns" in sections, f"{name}: no Returns section"
    if "out" in params:
        text = " ".join(" ".join(sections["Parameters"]).split())
        assert "out : ndarray, optional A location into which the" in text, name


@pytest.mark.parametrize("name", TWINS)
def test_twin_takes_the_public_parameters(name):
    def shape(func):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(func).parameters.values()]

    assert shape(getattr(fastloss.fallback, name)) == shape(getattr(fastloss, name))


@pytest.mark.parametrize("name", TWINS)
def test_twin_docstring_points_to_the_public_one(name):
    doc = getattr(fastloss.fallback, name).__doc__
    assert doc == f"The NumPy implementation of :func:`fastloss.{name}`."


@pytest.mark.parametrize("name", TWINS)
def test_public_function_is_the_documented_wrapper(name):
    func = getattr(fastloss, name)
    assert func.__module__ == "fastloss" and func.__name__ == name
    assert func.__doc__ != getattr(fastloss.fallback, name).__doc__
