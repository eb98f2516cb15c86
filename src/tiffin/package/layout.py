"""Where each layer lives inside a package folder."""

from __future__ import annotations

MANIFEST = "tiffin.json"
SIGNATURE = "tiffin.sig"  # detached signature: travels with the package, outside the seal
SCHEMA = "schema.json"
MODEL_CARD = "README.md"
ENV_DIR = "env"
CODE_DIR = "code"
ARTIFACTS_DIR = "artifacts"
EXAMPLES_DIR = "examples"
REQUIREMENTS = "env/requirements.txt"
LOCK = "env/requirements.lock"
EXAMPLE_INPUT = "examples/input.json"
EXAMPLE_OUTPUT = "examples/output.json"

# Files that are not listed in the manifest's file index: the manifest itself, and
# the detached signature (which signs the manifest's digest and so cannot be inside it).
UNINDEXED = frozenset({MANIFEST, SIGNATURE})

LAYERS = ("metadata", "schema", "environment", "logic", "artifact", "examples")


def layer_of(relpath: str) -> str:
    """The layer a package-relative path belongs to."""
    top = relpath.split("/", 1)[0]
    if relpath == SCHEMA:
        return "schema"
    if top == ENV_DIR:
        return "environment"
    if top == CODE_DIR:
        return "logic"
    if top == ARTIFACTS_DIR:
        return "artifact"
    if top == EXAMPLES_DIR:
        return "examples"
    return "metadata"
