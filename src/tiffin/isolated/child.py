"""The child side: runs inside a package's own environment (standard library + NumPy + the lock).

``python -m tiffin.isolated.child examples PKG [RTOL ATOL]``: replay the recorded examples
and print one ``TIFFIN-REPLAY {json}`` line: match, the difference (largest first named),
load and predict times, and the wall-clock time of the first prediction, from which the
parent measures the cold start. ``... predict PKG IN.json OUT.json``: predict inputs
written with the example codec (the caller reads and writes the user's file formats, so
the environment needs no pandas or pyarrow the model itself does not).
"""

from __future__ import annotations

import json
import sys
import time

_START = time.perf_counter()

from tiffin.errors import TiffinError  # noqa: E402  (cheap: the standard library only)

# The loader and the codec are imported inside the commands, after _START, so that the
# load time reported to the parent counts importing NumPy and the framework, as a cold
# start does.


def replay_examples(path: str, rtol: float = 1e-6, atol: float = 1e-6) -> dict[str, object]:
    """Load the package, predict its recorded input, compare with its recorded output."""
    from tiffin._load import load
    from tiffin.schema import typed_json as examples

    model = load(path)
    loaded = time.perf_counter()
    with open(f"{path}/examples/input.json", "rb") as fh:
        inputs = examples.loads(fh.read())
    with open(f"{path}/examples/output.json", "rb") as fh:
        expected = examples.loads(fh.read())
    actual = model.predict(inputs)
    done = time.perf_counter()
    predicted_at = time.time()
    problem = examples.compare(expected, actual, rtol=rtol, atol=atol)
    return {
        "match": problem is None,
        "difference": problem,
        "rtol": rtol,
        "atol": atol,
        "load_seconds": round(loaded - _START, 4),
        "predict_seconds": round(done - loaded, 4),
        "predicted_at": predicted_at,
        "python": sys.version.split()[0],
        "executable": sys.executable,
    }


ERROR_PREFIX = "TIFFIN-ERROR "


def main(argv: list[str]) -> int:
    """Run a replay command; a tiffin error is reported as one ``TIFFIN-ERROR {json}``
    line on stderr (the parent raises it again), not a traceback."""
    try:
        return _main(argv)
    except TiffinError as exc:
        report = {"type": type(exc).__name__, "message": exc.message, "where": exc.where,
                  "fix": exc.fix}  # fmt: skip
        sys.stderr.write(ERROR_PREFIX + json.dumps(report) + "\n")
        return 3


def _main(argv: list[str]) -> int:
    if argv[:1] == ["examples"] and len(argv) in (2, 4):
        tol = [float(a) for a in argv[2:4]] or [1e-6, 1e-6]
        print("TIFFIN-REPLAY " + json.dumps(replay_examples(argv[1], *tol)), flush=True)
        return 0
    if argv[:1] == ["predict"] and len(argv) == 4:
        from tiffin._load import load
        from tiffin.schema import typed_json as examples

        model = load(argv[1])
        with open(argv[2], "rb") as fh:
            inputs = examples.loads(fh.read())
        output = examples.dumps(model.predict(inputs))
        with open(argv[3], "wb") as fh:
            fh.write(output)
        return 0
    sys.stderr.write(
        "usage: python -m tiffin.isolated.child examples PKG [RTOL ATOL] | predict PKG IN.json OUT.json\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
