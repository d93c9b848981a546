from __future__ import annotations

from tollway.gateway.health import HealthBook
from tollway.providers.registry import ResolvedEndpoint, load_registry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoint() -> ResolvedEndpoint:
    return load_registry(None).endpoints_of("tollway-demo-chat")[0]


def test_circuit_opens_after_threshold_and_half_opens_for_one_trial() -> None:
    clock = Clock()
    book = HealthBook(failure_threshold=3, cooldown_s=30, clock=clock)
    ep = endpoint()
    for _ in range(2):
        book.record_failure(ep)
        assert not book.is_open(ep)
    book.record_failure(ep)
    assert book.is_open(ep)
    clock.now += 31
    assert not book.is_open(ep)  # the first caller after the cooldown gets the trial
    assert book.is_open(ep)  # everyone else still skips it
    book.record_failure(ep)  # the trial failed: open again for a full cooldown
    clock.now += 29
    assert book.is_open(ep)
    clock.now += 2
    assert not book.is_open(ep)
    book.record_success(ep, ttft_ms=10, completion_tokens=5, total_ms=20)
    assert not book.is_open(ep)
    assert not book.is_open(ep)


def test_speed_estimates_move_from_hints_towards_measurements() -> None:
    book = HealthBook(alpha=0.5)
    ep = endpoint()
    hinted = book.predicted_latency_ms(ep, 100)
    book.record_success(ep, ttft_ms=10, completion_tokens=100, total_ms=110)  # 1000 tok/s
    first = book.snapshot(ep)
    assert first["ttft_ms"] == 10  # the first sample replaces the hint
    assert first["tokens_per_second"] == 1000
    assert book.predicted_latency_ms(ep, 100) < hinted
    book.record_success(ep, ttft_ms=30, completion_tokens=100, total_ms=130)
    assert book.snapshot(ep)["ttft_ms"] == 20  # EWMA with alpha 0.5


def test_circuit_state_is_read_without_spending_the_trial() -> None:
    clock = Clock()
    book = HealthBook(failure_threshold=2, cooldown_s=30, clock=clock)
    ep = endpoint()
    assert book.circuit(ep) == "closed"
    book.record_failure(ep)
    assert book.circuit(ep) == "closed"
    book.record_failure(ep)
    assert book.circuit(ep) == "open"
    clock.now += 31
    assert book.circuit(ep) == "half_open"
    assert book.circuit(ep) == "half_open"  # reading twice changes nothing
    assert not book.is_open(ep)  # so the trial is still there for a request
    assert book.circuit(ep) == "open"
    book.record_success(ep, ttft_ms=10, completion_tokens=5, total_ms=20)
    assert book.circuit(ep) == "closed"
