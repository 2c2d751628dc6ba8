"""A job's dollar budget (``budget_usd``): the guard that stops launching before it is passed.

The guard keeps a running estimate in the terms of ``lambdamr.cost``:

* every attempt launched pays its Lambda request at once;
* an attempt in flight is *reserved* at its worst case: its whole timeout at its memory
  (Lambda stops it there), the GB-seconds it can cost at most;
* once it ends, the reservation gives way to what it cost: the winner's billed duration
  (its run and a cold start's INIT phase) and the storage requests the runtime made; a failed
  attempt's as ``lambdamr.driver.billing`` prices it; one nothing is known of stays at its
  worst case.

Before the scheduler launches a task it asks ``admits``: does the estimate, plus this attempt
at its worst, stay within the budget? If not and the job still has attempts in flight, the
task waits: what they really cost is usually far less than reserved. If not and nothing is in
flight, the budget is spent: the job is *stopped* — every call not yet launched, and every
one the job is given later, fails with ``BudgetExceededError``. Attempts already running are
let finish (their results are kept), so the estimate never passes the budget by more than
what the estimate leaves out: a cold start's INIT phase beyond the timeout of an attempt
reserved at it, and the S3 requests the driver makes itself (staging, reading results,
listing), which the summary's cost does count.
"""

from __future__ import annotations

from lambdamr.cost import RegionPrices, attempt_usd, format_usd, region_prices, storage_requests_usd
from lambdamr.errors import BudgetExceededError, ConfigurationError

#: what a float sum may be off by before it counts as over the budget
_SLACK_USD = 1e-12


class JobBudget:
    """The budget guard of one job (its scheduler thread alone uses it)."""

    def __init__(self, limit_usd: float, prices: RegionPrices, architecture: str = "x86_64") -> None:
        self.limit_usd = limit_usd
        self.prices = prices
        self.architecture = architecture
        self.spent_usd = 0.0  # requests of every attempt, and what the ended ones cost
        self.reserved_usd = 0.0  # the worst case of every attempt in flight
        self._reserved: dict[tuple[int, int], float] = {}
        self.stopped = False  # the budget stopped the job
        self.refused_calls = 0  # calls failed with BudgetExceededError
        self.refused_tasks = 0
        self.estimate_at_stop_usd: float | None = None

    @classmethod
    def for_job(cls, limit_usd: float, region: str | None, architecture: str) -> JobBudget:
        """The guard of a job in ``region``.

        Raises:
            ConfigurationError: the cost model has no prices for the region.
        """
        try:
            prices = region_prices(region)
            prices.gb_second(architecture)
        except ConfigurationError as exc:
            raise ConfigurationError(f"budget_usd={limit_usd:g} needs Lambda prices to estimate against: {exc}") from None
        return cls(limit_usd, prices, architecture)

    @property
    def estimate_usd(self) -> float:
        """What the job can have cost at most by now: spent, plus what is in flight at its worst."""
        return self.spent_usd + self.reserved_usd

    def worst_case_usd(self, memory_mb: int, timeout_s: float) -> float:
        """The most one attempt can cost: its request and its whole timeout at its memory."""
        return attempt_usd(timeout_s, memory_mb, self.prices, self.architecture)

    def admits(self, memory_mb: int, timeout_s: float) -> bool:
        """Whether one more attempt, at its worst, keeps the estimate within the budget."""
        return self.estimate_usd + self.worst_case_usd(memory_mb, timeout_s) <= self.limit_usd + _SLACK_USD

    def launched(self, task_id: int, attempt: int, memory_mb: int, timeout_s: float) -> None:
        """An attempt was launched: its request is spent, its compute reserved at the worst."""
        request = self.prices.per_request
        worst = self.worst_case_usd(memory_mb, timeout_s) - request
        self.spent_usd += request
        self._reserved[(task_id, attempt)] = worst
        self.reserved_usd += worst

    def ended(self, task_id: int, attempt: int, compute_usd: float | None, requests: dict[str, int] | None = None) -> None:
        """An attempt ended having cost ``compute_usd`` (None: unknown, kept at its worst)
        plus the storage ``requests`` it made; an attempt that already ended is ignored."""
        worst = self._reserved.pop((task_id, attempt), None)
        if worst is None:
            return
        self.reserved_usd = max(0.0, self.reserved_usd - worst)
        self.spent_usd += worst if compute_usd is None else compute_usd
        if requests:
            self.spent_usd += storage_requests_usd(
                {k: v for k, v in requests.items() if k in ("puts", "gets", "lists", "deletes")}, self.prices
            )

    def compute_usd(self, seconds: float, memory_mb: int) -> float:
        """The GB-seconds of ``seconds`` at ``memory_mb`` in dollars (no request)."""
        return attempt_usd(seconds, memory_mb, self.prices, self.architecture) - self.prices.per_request

    def stop(self) -> None:
        """The budget is spent: the job launches nothing more."""
        if not self.stopped:
            self.stopped = True
            self.estimate_at_stop_usd = self.estimate_usd

    def refusal(self, memory_mb: int, timeout_s: float) -> BudgetExceededError:
        """The error a call not launched gets."""
        worst = self.worst_case_usd(memory_mb, timeout_s)
        return BudgetExceededError(
            f"not run: the job's budget of {format_usd(self.limit_usd)} is spent (estimate "
            f"{format_usd(self.estimate_usd)}, and one more task can cost up to {format_usd(worst)}: "
            f"{timeout_s:g} s at {memory_mb} MB); raise budget_usd=..., or lower timeout_s or memory_mb "
            "(the guard counts a task in flight at its whole timeout)",
            budget_usd=self.limit_usd,
            estimate_usd=self.estimate_usd,
        )

    def describe(self) -> str:
        """One line for the job's summary."""
        if not self.stopped:
            return f"budget {format_usd(self.limit_usd)}: not reached (estimate {format_usd(self.estimate_usd)})"
        return (
            f"budget {format_usd(self.limit_usd)} STOPPED the job at an estimate of "
            f"{format_usd(self.estimate_at_stop_usd or 0.0)}: {self.refused_tasks:,} tasks "
            f"({self.refused_calls:,} calls) not launched (BudgetExceededError); running tasks were let finish"
        )
