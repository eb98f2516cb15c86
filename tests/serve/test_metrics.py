"""Prometheus metrics per model and version, rendered by prometheus-client."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tiffin.serve.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_requests_errors_latency_batches_and_queue() -> None:
    metrics = Metrics()
    iris = metrics.for_model("iris", "2")
    for _ in range(3):
        iris.answered("infer", 200, 0.002)
    iris.answered("infer", 400, 0.001)
    iris.answered("invocations", 503, 0.001)
    iris.batch(5, 7, 0.01)
    iris.queue_depth.set(4)
    metrics.for_model("", "").answered("infer", 404, 0.0)
    got = samples(metrics)
    m = (("model", "iris"), ("version", "2"))

    def key(name: str, *extra: tuple[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, tuple(sorted(m + extra)))

    assert got[key("tiffin_requests_total", ("code", "200"), ("endpoint", "infer"))] == 3
    assert got[key("tiffin_requests_total", ("code", "503"), ("endpoint", "invocations"))] == 1
    assert got[key("tiffin_errors_total", ("code", "400"))] == 1
    assert got[key("tiffin_request_latency_seconds_count", ("endpoint", "infer"))] == 3
    assert got[key("tiffin_request_latency_seconds_bucket", ("endpoint", "infer"), ("le", "0.0025"))] == 3  # fmt: skip
    assert got[key("tiffin_batch_requests_sum")] == 5
    assert got[key("tiffin_batch_rows_sum")] == 7
    assert got[key("tiffin_predict_seconds_count")] == 1
    assert got[key("tiffin_queue_depth")] == 4
    unknown = (("code", "404"), ("endpoint", "infer"), ("model", ""), ("version", ""))
    assert got[("tiffin_requests_total", unknown)] == 1
    assert not any(k[0] == "tiffin_queue_depth" and ("model", "") in k[1] for k in got)


def test_servers_do_not_share_registries() -> None:
    a, b = Metrics(), Metrics()
    a.for_model("m", "1").answered("infer", 200, 0.001)
    assert b"tiffin_requests_total{" not in b.render()
