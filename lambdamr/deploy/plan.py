"""``deploy --plan``: everything a deploy would create or change, with every policy document in
full and what the deployment costs at rest — found with read calls only, so it can run before
anything exists and under a read-only role. ``planner.plan_deploy`` makes one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lambdamr.deploy.at_rest import PRICES_SOURCE, AtRest
from lambdamr.deploy.contents import human_size

_IMPERATIVE = {
    "created": "create",
    "tagged": "tag",
    "blocked": "block",
    "turned": "turn",
    "set": "set",
    "removed": "remove",
    "attached": "attach",
    "updated": "update",
    "published": "publish",
    "deleted": "delete",
    "limited": "limit",
    "moved": "move",
    "restored": "restore",
}


def imperative(change: str) -> str:
    """A change as deploy reports it ("created bucket B") as a plan line ("create bucket B")."""
    verb, _, rest = change.partition(" ")
    return f"{_IMPERATIVE.get(verb, verb)} {rest}"


@dataclass(frozen=True)
class PlannedStep:
    """One write a deploy would make; ``document`` is what it sets, shown in full."""

    resource: str
    what: str
    document: Any = None


@dataclass
class DeployPlan:
    """What ``deploy`` with these options would do, found with read calls only."""

    region: str
    account: str
    function_name: str
    bucket: str
    steps: list[PlannedStep] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: every policy document deploy attaches, by where it goes
    documents: dict[str, Any] = field(default_factory=dict)
    at_rest: list[AtRest] = field(default_factory=list)

    @property
    def usd_per_month(self) -> float:
        return sum(item.usd_per_month for item in self.at_rest)

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "account": self.account,
            "function": self.function_name,
            "bucket": self.bucket,
            "changes": [{"resource": s.resource, "change": s.what, "document": s.document} for s in self.steps],
            "unchanged": self.unchanged,
            "documents": self.documents,
            "at_rest": [vars(item) for item in self.at_rest],
            "usd_per_month": round(self.usd_per_month, 6),
            "prices": PRICES_SOURCE,
        }

    def __str__(self) -> str:
        lines = [f"lambdamr deploy plan: {self.function_name} in {self.region} (account {self.account})"]
        if not self.steps:
            lines.append("  nothing to change")
        for step in self.steps:
            lines.append(f"  + {step.what}")
            if step.document is not None:
                lines += ["      " + line for line in json.dumps(step.document, indent=2).splitlines()]
        if self.unchanged:
            lines.append("  unchanged: " + "; ".join(self.unchanged))
        lines.append(f"at rest, a month ({PRICES_SOURCE}):")
        for item in self.at_rest:
            lines.append(f"  {item.what}: {human_size(item.size)}, ${item.usd_per_month:.2f} ({item.note})")
        lines.append(f"  total: ${self.usd_per_month:.2f} a month, plus what jobs run (see docs/aws.md, Costs)")
        return "\n".join(lines)


def format_policies(documents: dict[str, Any]) -> str:
    """Policy documents by name, each in full, for a terminal."""
    return "\n\n".join(f"{name}:\n{json.dumps(doc, indent=2)}" for name, doc in documents.items())
