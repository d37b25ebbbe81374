"""The plugin author's guide stays true: every hook documented, every example runs.

As datasette's ``tests/test_docs.py``: a hook added to ``fmnist_gui/hookspecs.py``
without a section in ``plugins/README.md`` fails here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from fmnist_gui.plugins import hookspecs
from fmnist_gui.plugins.host import FILE_MODULE_PREFIX, PROJECT, get_plugin_manager

GUIDE = Path(__file__).resolve().parents[2] / "plugins" / "README.md"
BLOCK_RE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
PLUGIN_FILE_RE = re.compile(r"^# plugin file: (\w+)\.py\n")


def hook_names() -> list[str]:
    return sorted(
        name for name, value in vars(hookspecs).items() if hasattr(value, f"{PROJECT}_spec")
    )


def code_blocks(language: str) -> list[str]:
    return [
        body
        for lang, body in BLOCK_RE.findall(GUIDE.read_text(encoding="utf-8"))
        if lang == language
    ]


def plugin_examples() -> list[tuple[str, str]]:
    found = []
    for body in code_blocks("python"):
        match = PLUGIN_FILE_RE.match(body)
        if match:
            found.append((match.group(1), body))
    return found


def test_there_are_hooks():
    assert hook_names() == [
        "fmnist_register_losses",
        "fmnist_register_optimizers",
        "fmnist_register_schedulers",
    ]


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_section_with_its_signature(hook):
    text = GUIDE.read_text(encoding="utf-8")
    assert re.search(rf"^### {hook}\(\) -> list\[\w+Spec\]$", text, re.M), (
        f"plugins/README.md has no '### {hook}() -> list[...]' section: document the new hook"
    )
    assert f"def {hook}():" in text, f"plugins/README.md has no example implementing {hook}"


def test_every_python_block_is_valid_python():
    blocks = code_blocks("python") + code_blocks("py")
    assert len(blocks) >= 5
    for body in blocks:
        compile(body, str(GUIDE), "exec")


@pytest.mark.parametrize(
    ("name", "body"),
    plugin_examples(),
    ids=lambda v: v if isinstance(v, str) and "\n" not in v else "",
)
def test_example_plugin_loads_and_passes_the_self_test(tmp_path, name, body):
    (tmp_path / f"{name}.py").write_text(body, encoding="utf-8")
    try:
        host = get_plugin_manager([tmp_path])
        record = host.records[name]
        assert record.status == "loaded", record.traceback
        assert record.error == ""
        assert record.rejected == {}
        assert record.provides, "the example registers nothing"
    finally:
        sys.modules.pop(FILE_MODULE_PREFIX + name, None)


def test_guide_examples_cover_both_hooks():
    bodies = "".join(body for _, body in plugin_examples())
    for hook in hook_names():
        assert f"def {hook}" in bodies
