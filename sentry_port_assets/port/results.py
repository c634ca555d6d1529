"""Results shared by the targets and the reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EntityResult:
    """What happened to one entity sent to Port (or to the local catalog)."""

    identifier: str
    ok: bool
    created: bool = False
    status: int | None = None
    error: str | None = None
    message: str | None = None
    trace_id: str | None = None


@dataclass
class DeleteResult:
    deleted: list[str] = field(default_factory=list)
    failures: list[EntityResult] = field(default_factory=list)


@dataclass
class EnsureReport:
    """What ensure_blueprints did: created blueprints, and for existing ones the fields it added."""

    created: list[str] = field(default_factory=list)
    added: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    scorecards_created: list[str] = field(default_factory=list)
    scorecards_kept: list[str] = field(default_factory=list)

    def to_metadata(self) -> dict[str, object]:
        return {
            "created": list(self.created),
            "added": {k: list(v) for k, v in self.added.items()},
            "unchanged": list(self.unchanged),
            "scorecards_created": list(self.scorecards_created),
            "scorecards_kept": list(self.scorecards_kept),
        }
