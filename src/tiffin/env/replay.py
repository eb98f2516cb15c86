"""Runs inside a package's own environment (standard library + NumPy + the lock only).

``python -m tiffin.env.replay examples PKG``: replay the recorded examples, print a JSON
report (match, largest difference, cold start). ``... predict PKG IN [OUT]``: predict
an input file.
"""

from __future__ import annotations

import json
import sys
import time

_START = time.perf_counter()


def replay_examples(path: str) -> dict[str, object]:
    import tiffin
    from tiffin import examples

    model = tiffin.load(path)
    loaded = time.perf_counter()
    with open(f"{path}/examples/input.json", "rb") as fh:
        inputs = examples.loads(fh.read())
    with open(f"{path}/examples/output.json", "rb") as fh:
        expected = examples.loads(fh.read())
    actual = model.predict(inputs)
    done = time.perf_counter()
    problem = examples.compare(expected, actual)
    return {
        "match": problem is None,
        "difference": problem,
        "load_seconds": round(loaded - _START, 4),
        "cold_start_seconds": round(done - _START, 4),
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["examples"]:
        print("TIFFIN-REPLAY " + json.dumps(replay_examples(argv[1])))
        return 0
    if argv[:1] == ["predict"]:
        from pathlib import Path

        import tiffin
        from tiffin import datafiles

        model = tiffin.load(argv[1])
        inputs = datafiles.read_input(Path(argv[2]), model.signature)
        body = datafiles.write_output(
            model.predict(inputs), Path(argv[3]) if len(argv) > 3 else None
        )
        if body is not None:
            sys.stdout.buffer.write(body)
        return 0
    sys.stderr.write("usage: python -m tiffin.env.replay examples PKG | predict PKG IN [OUT]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
