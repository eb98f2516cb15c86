"""LightGBM model text, checked before LightGBM parses it.

LightGBM's C++ reader trusts its own format. Measured with LightGBM 4 on mutants of a
five-tree model: a text cut short anywhere after the header sends the reader past the
end of the buffer (it jumps by the ``tree_sizes`` offsets, and scans for ``=`` and line
ends without stopping at the terminating NUL), and the process dies of SIGABRT or
SIGSEGV instead of raising; a tree whose child indices or split features point outside
its arrays is read out of bounds (or loops forever) at predict time. A package whose
manifest was re-sealed around such a text would crash or hang every process that loads
it, a server included. No library validates the format, so this module does, by hand:
the structure LightGBM's reader relies on, and every index a prediction follows.

- the text is UTF-8 without NUL bytes or carriage returns; the header ends at the first ``Tree=`` line and
  names ``max_feature_idx``, as many feature names and infos, and a positive
  ``num_class`` and ``num_tree_per_iteration`` that agree with each other and with the
  objective (LightGBM divides by one and sizes outputs by the other; the trees are
  whole iterations); ``end of trees`` follows the last tree;
- every tree is a ``Tree=i`` line (in order) and ``key=value`` lines up to a blank line;
  ``tree_sizes``, when present, lists each tree's exact size in bytes;
- array lengths agree with ``num_leaves`` and ``num_cat``; split features are within
  ``max_feature_idx``; the children name every internal node but the root and every
  leaf exactly once (so a prediction always ends at a leaf); categorical splits index
  ``cat_boundaries``, which index ``cat_threshold``; linear leaves name valid features;
- a ``parameters:`` section holds ``[name: value]`` lines and ends with
  ``end of parameters``;
- the ``pandas_categorical:`` line LightGBM's Python package parses at load is JSON:
  null or lists of unique categories.

The check costs about 60 ms on a 500-tree, 2.8 MB model (LightGBM's own parse of it:
about 10 ms), paid at pack and at load.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence

from ..errors import FlavorError

_MAX_LINES_PER_TREE = 64  # LightGBM writes at most about 25 fields per tree


class _Malformed(Exception):
    pass


def check_model_text(text: str, where: str) -> None:
    """Raise FlavorError naming the first thing wrong with ``text``; return when sound."""
    try:
        _check(text.encode("utf-8"))
        _check_pandas_categorical(text)
    except _Malformed as exc:
        raise FlavorError(
            f"malformed LightGBM model text: {exc}",
            where=where,
            fix="save the model again with LightGBM (Booster.save_model or model_to_string)",
        ) from None


def _check(data: bytes) -> None:
    if b"\x00" in data:
        raise _Malformed("it holds a NUL byte")
    if b"\r" in data:
        # LightGBM writes bare line feeds; a carriage return is refused here, in the
        # bytes given, whatever newline translation reading the file may have done.
        line = data.count(b"\n", 0, data.index(b"\r")) + 1
        raise _Malformed(f"line {line} holds a carriage return")
    if not data.startswith(b"tree\n"):
        raise _Malformed("it does not start with a 'tree' line")
    first = data.find(b"\nTree=")
    end_of_trees = data.find(b"\nend of trees\n")
    if end_of_trees < 0 and data.endswith(b"\nend of trees"):
        end_of_trees = len(data) - len(b"\nend of trees")
    if end_of_trees < 0:
        raise _Malformed("it has no 'end of trees' line (is it cut short?)")
    header = _fields(data[: first if 0 <= first < end_of_trees else end_of_trees].split(b"\n")[1:])
    max_feature = _int(header, "max_feature_idx", low=0)
    per_iteration = _int(header, "num_tree_per_iteration", low=1)  # a divisor in LightGBM
    _check_objective(header, _int(header, "num_class", low=1), per_iteration)
    for key in (b"feature_names", b"feature_infos"):
        if key in header and len(header[key].split()) != max_feature + 1:
            raise _Malformed(f"{key.decode()} does not list max_feature_idx + 1 = {max_feature + 1} features")  # fmt: skip
    if first < 0 or first > end_of_trees:
        sizes = _ints(header.get(b"tree_sizes", b""), "tree_sizes", low=0)
        if sizes:
            raise _Malformed(f"tree_sizes lists {len(sizes)} trees, the text has none")
        return _check_tail(data[end_of_trees:])
    trees = data[first + 1 : end_of_trees + 1]
    blocks = _split_trees(trees)
    if b"tree_sizes" in header:
        sizes = _ints(header[b"tree_sizes"], "tree_sizes", low=0)
        if sizes != [len(b) for b in blocks]:
            raise _Malformed(
                f"tree_sizes {_short(sizes)} do not match the {len(blocks)} trees in the text "
                f"(sizes {_short([len(b) for b in blocks])})"
            )
    if len(blocks) % per_iteration:
        raise _Malformed(f"{len(blocks)} trees are not whole iterations of {per_iteration}")
    for index, block in enumerate(blocks):
        _check_tree(block, index, max_feature)
    _check_tail(data[end_of_trees:])


_MULTICLASS = (b"multiclass", b"softmax", b"multiclassova", b"multiclass_ova", b"ova", b"ovr")


def _check_objective(header: dict[bytes, bytes], num_class: int, per_iteration: int) -> None:
    """The objective, ``num_class`` and ``num_tree_per_iteration`` agree.

    LightGBM sizes its outputs by one and indexes trees by another: measured, a binary
    model told ``num_tree_per_iteration=3``, a multiclass one told ``num_class=1``, or
    an empty ``objective`` line dies of SIGABRT or SIGSEGV (a model trained with a custom
    objective has no such line).
    """
    if b"objective" not in header:  # a model trained with a custom objective has none
        if num_class != per_iteration:
            raise _Malformed(f"num_class {num_class} and num_tree_per_iteration {per_iteration} disagree")  # fmt: skip
        return
    objective = header[b"objective"].split()
    if not objective:
        raise _Malformed("its objective line is empty")
    declared = [p.partition(b":")[2] for p in objective[1:] if p.startswith(b"num_class:")]
    implied = per_iteration
    if objective[0] in _MULTICLASS:
        if len(declared) != 1:
            raise _Malformed(f"its {objective[0].decode()} objective does not say num_class")
        values = _ints(declared[0], "the objective's num_class", low=1)
        implied = values[0] if len(values) == 1 else -1
    elif declared or objective[0] != b"custom":
        implied = 1  # every other built-in objective grows one tree per iteration
    if not num_class == per_iteration == implied:
        raise _Malformed(
            f"num_class {num_class}, num_tree_per_iteration {per_iteration} and the "
            f"objective {b' '.join(objective).decode(errors='replace')[:60]!r} disagree"
        )


def _split_trees(trees: bytes) -> list[bytes]:
    """The ``Tree=i`` blocks, each from its ``Tree=`` line to the next one."""
    starts = [0]
    pos = trees.find(b"\nTree=")
    while pos >= 0:
        starts.append(pos + 1)
        pos = trees.find(b"\nTree=", pos + 1)
    starts.append(len(trees))
    return [trees[a:b] for a, b in itertools.pairwise(starts)]


def _check_tree(block: bytes, index: int, max_feature: int) -> None:
    lines = block.split(b"\n")
    if lines[0] != b"Tree=%d" % index:
        raise _Malformed(f"tree {index} does not start with 'Tree={index}'")
    body: list[bytes] = []
    for line in lines[1:]:
        if not line:
            break  # LightGBM's tree reader stops at the first blank line
        body.append(line)
    if len(body) > _MAX_LINES_PER_TREE:
        raise _Malformed(f"tree {index} has {len(body)} lines")
    if block[-2:] != b"\n\n":
        raise _Malformed(f"tree {index} does not end with a blank line")
    tree = _fields(body, f"tree {index}")
    where = f"tree {index}"
    for field, value in tree.items():  # every field of a tree is numbers (shrinkage=x aborts)
        if not _NUMBERS.fullmatch(value):
            raise _Malformed(f"{where} {field.decode(errors='replace')[:40]} holds something other than numbers")  # fmt: skip
    leaves = _int(tree, "num_leaves", low=1, where=where)
    num_cat = _int(tree, "num_cat", low=0, where=where)
    _numbers(tree, "leaf_value", leaves, where)
    if leaves == 1:
        return
    internal = leaves - 1
    features = _ints(_need(tree, "split_feature", where), f"{where} split_feature", low=0)
    _count(features, internal, "split_feature", where)
    if max(features) > max_feature:
        raise _Malformed(f"{where} splits on feature {max(features)}; max_feature_idx is {max_feature}")  # fmt: skip
    thresholds = _numbers(tree, "threshold", internal, where)
    decisions = _ints(_need(tree, "decision_type", where), f"{where} decision_type", low=0)
    _count(decisions, internal, "decision_type", where)
    left = _ints(_need(tree, "left_child", where), f"{where} left_child")
    right = _ints(_need(tree, "right_child", where), f"{where} right_child")
    _count(left, internal, "left_child", where)
    _count(right, internal, "right_child", where)
    _check_children(left, right, leaves, where)
    for key, n in (("split_gain", internal), ("internal_value", internal),
                   ("internal_weight", internal), ("internal_count", internal),
                   ("leaf_weight", leaves), ("leaf_count", leaves)):  # fmt: skip
        if key.encode() in tree:
            _numbers(tree, key, n, where)
    categorical = [i for i, d in enumerate(decisions) if d & 1]
    if categorical or num_cat:
        _check_categorical(tree, categorical, thresholds, num_cat, where)
    if tree.get(b"is_linear", b"0").strip() == b"1":
        _check_linear(tree, leaves, max_feature, where)


def _check_children(left: list[int], right: list[int], leaves: int, where: str) -> None:
    """The child slots name every internal node but the root, and every leaf, once.

    Internal nodes are 0 .. leaves-2 and leaf k is written as ~k (negative). With every
    node but the root having exactly one parent, the walk from the root that a
    prediction takes can neither loop nor leave the arrays (a cycle it could reach
    would need a node with two parents). Sorting is a C loop; walking the tree in
    Python took most of the check's time on a large model.
    """
    children = sorted(left + right)
    if children != [*range(-leaves, 0), *range(1, leaves - 1)]:
        if 0 in children:
            detail = "the root is named as a child"
        elif children[0] < -leaves or children[-1] >= leaves - 1:
            detail = f"child {children[0] if children[0] < -leaves else children[-1]} is out of range"  # fmt: skip
        else:
            detail = "a node or leaf is named twice"
        raise _Malformed(f"{where}: the children do not name each node and leaf once ({detail})")


def _check_categorical(
    tree: dict[bytes, bytes], splits: list[int], thresholds: list[bytes], num_cat: int, where: str
) -> None:
    bounds = _ints(_need(tree, "cat_boundaries", where), f"{where} cat_boundaries", low=0)
    _count(bounds, num_cat + 1, "cat_boundaries", where)
    if bounds[0] != 0 or any(b > a for b, a in itertools.pairwise(bounds)):
        raise _Malformed(f"{where}: cat_boundaries must start at 0 and never decrease")
    cat_threshold = _ints(_need(tree, "cat_threshold", where), f"{where} cat_threshold", low=0)
    _count(cat_threshold, bounds[-1], "cat_threshold", where)
    for node in splits:
        try:
            value = float(thresholds[node])
        except ValueError:
            raise _Malformed(f"{where}: categorical split {node} has no number") from None
        if not (value.is_integer() and 0 <= value < num_cat):
            raise _Malformed(f"{where}: categorical split {node} points at category set {value:g} of {num_cat}")  # fmt: skip


def _check_linear(tree: dict[bytes, bytes], leaves: int, max_feature: int, where: str) -> None:
    _numbers(tree, "leaf_const", leaves, where)
    per_leaf = _ints(_need(tree, "num_features", where), f"{where} num_features", low=0)
    _count(per_leaf, leaves, "num_features", where)
    features = _ints(tree.get(b"leaf_features", b""), f"{where} leaf_features", low=0)
    _count(features, sum(per_leaf), "leaf_features", where)
    if features and max(features) > max_feature:
        raise _Malformed(f"{where}: a linear leaf uses feature {max(features)}; max_feature_idx is {max_feature}")  # fmt: skip
    _numbers(tree, "leaf_coeff", sum(per_leaf), where, allow_empty=True)


_PARAMETER = re.compile(rb"\[\w+: [^\n]*\]")


def _check_tail(tail: bytes) -> None:
    """The training parameters: LightGBM's own reader of these lines crashes on one that
    is not ``[name: value]``, and reads past the end without ``end of parameters``."""
    start = tail.find(b"\nparameters:\n")
    if start < 0:
        return
    stop = tail.find(b"\nend of parameters", start)
    if stop < 0:
        raise _Malformed("its 'parameters:' section has no 'end of parameters' line (is it cut short?)")  # fmt: skip
    for line in tail[start + len(b"\nparameters:\n") : stop].split(b"\n"):
        if line and not _PARAMETER.fullmatch(line):
            raise _Malformed(f"a line of its parameters is not '[name: value]': {line[:40]!r}")


def _check_pandas_categorical(text: str) -> None:
    """The ``pandas_categorical:`` line, found as LightGBM's Python package finds it (the
    text from the last line end before the final 19 characters) and parsed as JSON when
    the booster is built: null, or per categorical column a list of unique categories."""
    key = "pandas_categorical:"
    last = text[text.rfind("\n", 0, -len(key)) :].strip()
    if not last.startswith(key):
        return
    try:
        value = json.loads(last[len(key) :])
    except (ValueError, RecursionError):
        raise _Malformed("its pandas_categorical line is not JSON") from None
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(c, list) for c in value):
        raise _Malformed("its pandas_categorical line is not a list of category lists")
    for column in value:
        plain = all(type(v) in (str, int, float) for v in column)
        if not plain or len({(type(v), v) for v in column}) != len(column):
            raise _Malformed("its pandas_categorical line holds categories that are not unique strings or numbers")  # fmt: skip


# -- fields ------------------------------------------------------------------------


def _fields(lines: list[bytes], where: str = "the header") -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for line in lines:
        if not line:
            continue
        key, sep, value = line.partition(b"=")
        if not sep:
            if where == "the header":
                continue  # a flag line, such as a random forest's 'average_output'
            raise _Malformed(f"{where} has a line without '=': {line[:40]!r}")
        if key in out:
            raise _Malformed(f"{where} gives {key.decode(errors='replace')!r} twice")
        out[key] = value
    return out


def _need(fields: dict[bytes, bytes], key: str, where: str) -> bytes:
    value = fields.get(key.encode())
    if value is None:
        raise _Malformed(f"{where} has no {key}")
    return value


def _int(fields: dict[bytes, bytes], key: str, *, low: int, where: str = "the header") -> int:
    values = _ints(_need(fields, key, where), f"{where} {key}", low=low)
    if len(values) != 1:
        raise _Malformed(f"{where} {key} is not one number")
    return values[0]


def _ints(raw: bytes, what: str, low: int | None = None) -> list[int]:
    try:
        values = [int(v) for v in raw.split()]
    except ValueError:
        raise _Malformed(f"{what} holds something other than integers") from None
    if any(abs(v) >= 1 << 31 for v in values) or (low is not None and any(v < low for v in values)):  # fmt: skip
        raise _Malformed(f"{what} holds an integer out of range")
    return values


# One number as LightGBM's reader takes it (decimal, exponent, inf/infinity/nan/na);
# anything else ("x", "e", "1-2") is a fatal error thrown inside a parallel loop, and
# the process aborts.
_NUMBER = rb"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?i:inf(?:inity)?|nan|na))"
_NUMBERS = re.compile(rb"(?:%s(?: +%s)*)? *" % (_NUMBER, _NUMBER))


def _numbers(fields: dict[bytes, bytes], key: str, n: int, where: str, allow_empty: bool = False) -> list[bytes]:  # fmt: skip
    """The tokens of a number array, counted, each a number LightGBM can read.

    One regular expression over the whole line, not ``float`` on each of a large
    model's hundreds of thousands of values.
    """
    raw = fields.get(key.encode())
    if raw is None:
        if allow_empty and n == 0:
            return []
        raise _Malformed(f"{where} has no {key}")
    if not _NUMBERS.fullmatch(raw):
        raise _Malformed(f"{where} {key} holds something other than numbers")
    values = raw.split()
    _count(values, n, key, where)
    return values


def _count(values: Sequence[object], n: int, key: str, where: str) -> None:
    if len(values) != n:
        raise _Malformed(f"{where} {key} has {len(values)} values, not {n}")


def _short(values: list[int]) -> str:
    return str(values[:8])[:-1] + (", ...]" if len(values) > 8 else "]")
