#!/usr/bin/env python3
"""Checks that every public item of `common` has a runnable example in its docs.

An item is a `pub fn`, `pub struct`, `pub enum`, `pub trait`, `pub type` or a
module-level `pub const` (not `pub(crate)`); a module is checked through its `//!`
docs. Its doc comment must hold a code block (a line starting with ```). Trait
implementations and associated constants are covered by their type's docs.
Exits 1 and lists the items without one.
"""
import pathlib
import re
import sys

ITEM = re.compile(r"^(\s*)pub (?:unsafe )?(fn|struct|enum|trait|type|const) ([A-Za-z_][A-Za-z0-9_]*)")
root = pathlib.Path(__file__).resolve().parent.parent / "common" / "src"


def is_public_module(path):
    """The crate root, and files declared `pub mod NAME` by their parent."""
    if path == root / "lib.rs":
        return True
    name = path.parent.name if path.name == "mod.rs" else path.stem
    folder = path.parent.parent if path.name == "mod.rs" else path.parent
    parents = [folder / "lib.rs", folder / "mod.rs"]
    return any(
        re.search(rf"^pub mod {name};", parent.read_text(), re.M)
        for parent in parents
        if parent.exists()
    )

missing = []
checked = 0
for path in sorted(root.rglob("*.rs")):
    lines = path.read_text().splitlines()
    module_docs = [l for l in lines if l.startswith("//!")]
    if is_public_module(path):
        checked += 1
        if not any(l.strip().startswith("//! ```") for l in module_docs):
            missing.append(f"{path.relative_to(root.parent)}: module")
    in_tests = False
    for number, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            in_tests = True
        if in_tests:
            continue
        match = ITEM.match(line)
        if not match:
            continue
        indent, kind, name = match.groups()
        if kind == "const" and indent:
            continue  # an associated constant: its type's docs show it
        checked += 1
        docs = []
        above = number - 1
        while above >= 0 and (lines[above].strip().startswith(("///", "#[", "#![")) or lines[above].strip() == ""):
            if lines[above].strip().startswith("///"):
                docs.append(lines[above].strip())
            if lines[above].strip() == "" and not docs:
                break
            above -= 1
        if not any(d.startswith("/// ```") for d in docs):
            missing.append(f"{path.relative_to(root.parent)}:{number + 1}: {kind} {name}")

if missing:
    print(f"{len(missing)} public items of common without a doc example:")
    for item in missing:
        print(f"  {item}")
    sys.exit(1)
print(f"doc examples: all {checked} public items of common have one")
