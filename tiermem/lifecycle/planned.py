"""Planned moves column by column: what `Lifecycle.run` applies without an
`Action` per memory.

A large demote plans one move per memory; as pydantic objects those were a
tenth of the run, and as 300k long-lived containers they set off full
garbage collections (another tenth). `Moves` holds one group's demotions as
lists (ids, reasons) and `Planned` a plan's `Moves`; both are sequences of
`Action`s, built on demand, so everything that takes actions still does.
The executor asks them for ids, namespaces and event rows directly.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, groupby
from typing import overload

from tiermem.model import Action, TierName, _instance

EventRow = tuple[str, str, str, str, str | None, str]
"""An action's fields in `Action` order: id, namespace, action, src, dst, reason."""

_ACTION_FIELDS = frozenset(Action.model_fields)


def action(
    id_: str, namespace: str, verb: str, src: TierName, dst: TierName | None, reason: str
) -> Action:
    """An `Action` built without validation: equal to ``Action(...)`` of the same
    (already valid: str ids and namespaces, tier names) values, at a fifth of the
    cost. `verb` is its `action` field (move, delete, ...)."""
    values = {"id": id_, "namespace": namespace, "action": verb, "src": src, "dst": dst}
    values["reason"] = reason
    return _instance(Action, values, set(_ACTION_FIELDS))


class LazyActions(Sequence[Action]):
    """A sequence of `Action`s built on demand by `_at` (a non-negative index)."""

    @overload
    def __getitem__(self, i: int) -> Action: ...

    @overload
    def __getitem__(self, i: slice) -> list[Action]: ...

    def __getitem__(self, i: int | slice) -> Action | list[Action]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._at(i)

    def _at(self, i: int) -> Action:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Moves(LazyActions):
    """Moves of memories of one namespace from `src` to `dst`, each with its reason."""

    namespace: str
    src: TierName
    dst: TierName
    ids: list[str]
    reasons: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def _at(self, i: int) -> Action:
        return action(self.ids[i], self.namespace, "move", self.src, self.dst, self.reasons[i])

    def __iter__(self) -> Iterator[Action]:
        ns, src, dst = self.namespace, self.src, self.dst
        return (
            action(i, ns, "move", src, dst, r) for i, r in zip(self.ids, self.reasons, strict=True)
        )

    def part(self, start: int, stop: int) -> Moves:
        """Moves `start` to `stop` of these."""
        ids, reasons = self.ids[start:stop], self.reasons[start:stop]
        return Moves(self.namespace, self.src, self.dst, ids, reasons)

    def rows(self) -> Iterator[EventRow]:
        ns, src, dst = self.namespace, self.src, self.dst
        return ((i, ns, "move", src, dst, r) for i, r in zip(self.ids, self.reasons, strict=True))


@dataclass(frozen=True, eq=False)
class Planned(LazyActions):
    """A plan's moves: `Moves` one after another, as one sequence of actions."""

    parts: list[Moves]
    _ends: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ends", list(accumulate(len(p) for p in self.parts)))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def _at(self, i: int) -> Action:
        at = bisect_right(self._ends, i)
        return self.parts[at][i - (self._ends[at] - len(self.parts[at]))]

    def __iter__(self) -> Iterator[Action]:
        return chain.from_iterable(self.parts)

    def ids(self) -> list[str]:
        return [i for p in self.parts for i in p.ids]

    def namespaces(self) -> list[str]:
        return [p.namespace for p in self.parts for _ in p.ids]

    def action_rows(self) -> Iterator[EventRow]:
        """Each action's fields, for the events log (`EventLog.append`)."""
        return chain.from_iterable(p.rows() for p in self.parts)

    def batches(self, size_for: Callable[[TierName], int]) -> list[Planned]:
        """The batches `jobs._batches` cuts of these actions, in its order: runs of
        one (src, dst), namespaces together, `size_for(dst)` actions each."""
        parts = sorted(self.parts, key=lambda p: (p.src, p.dst, p.namespace))  # stable
        out: list[Planned] = []
        for (_, dst), run in groupby(parts, key=lambda p: (p.src, p.dst)):
            size, batch, room = size_for(dst), [], size_for(dst)
            for part in run:
                start = 0
                while start < len(part):
                    take = min(room, len(part) - start)
                    batch.append(part.part(start, start + take))
                    start, room = start + take, room - take
                    if not room:
                        out.append(Planned(batch))
                        batch, room = [], size
            if batch:
                out.append(Planned(batch))
        return out


def ids_of(actions: Sequence[Action]) -> list[str]:
    """The ids `actions` act on, in order."""
    return actions.ids() if isinstance(actions, Planned) else [a.id for a in actions]


def namespaces_of(actions: Sequence[Action]) -> list[str]:
    """The namespace of each of `actions`, in order."""
    if isinstance(actions, Planned):
        return actions.namespaces()
    return [a.namespace for a in actions]


def rows_of(actions: Sequence[Action]) -> Iterator[EventRow]:
    """Each action's fields in `Action` order (planned actions never become Actions)."""
    if isinstance(actions, Planned):
        return actions.action_rows()
    return ((a.id, a.namespace, a.action, a.src, a.dst, a.reason) for a in actions)
