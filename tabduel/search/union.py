"""A union family: one search over several families within ONE budget (mlp_portfolio: tabduel's MLP families).

Its trials first try a portfolio of configurations (search/portfolio.py: the shipped one, or a file that `tabduel
portfolio build` learned from bench cells; search/families.py queues them), then TPE samples a member family and
that family's params. A member's params are stored as '<member>.<param>' beside 'family', so that members' params
of one name (lr, dropout) stay apart in the study; a member's own record (search/families.py, passed in as `recs`)
suggests, runs, caps and describes its trials. The bench's post-hoc ensemble then mixes the members' trials: across
families.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

FAMILY = "family"  # the param that names a trial's member family
SEP = "."
Records = Mapping[str, Any]  # member name -> its search family record (search/families.py binds them)


@dataclass(frozen=True)
class MemberSpec:
    """A union trial's spec: its member family and that family's own spec."""

    family: str
    spec: Any


class Prefixed:
    """An Optuna trial (or FixedTrial) seen by one member's suggest function: its param names get the member's
    prefix ('realmlp.lr')."""

    def __init__(self, trial: Any, member: str):
        self._trial, self._prefix = trial, member + SEP

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        """trial.suggest_float of the prefixed name."""
        return self._trial.suggest_float(self._prefix + name, *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        """trial.suggest_int of the prefixed name."""
        return self._trial.suggest_int(self._prefix + name, *args, **kwargs)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """trial.suggest_categorical of the prefixed name."""
        return self._trial.suggest_categorical(self._prefix + name, choices)

    @property
    def params(self) -> dict[str, Any]:
        """The member's params so far, unprefixed."""
        return {k[len(self._prefix):]: v for k, v in self._trial.params.items() if k.startswith(self._prefix)}


def joined(member: str, params: dict[str, Any]) -> dict[str, Any]:
    """A member's own params as the union stores them: {'family': member, '<member>.<param>': value, ...}."""
    return {FAMILY: member, **{f"{member}{SEP}{k}": v for k, v in params.items()}}


def split(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(member, its own params) of a union trial's params."""
    member = params[FAMILY]
    prefix = member + SEP
    return member, {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def suggest(recs: Records, trial: Any, s: Any, threads: int, encodings: Sequence[str]) -> MemberSpec:
    """A member family (suggested), then its spec from its own space."""
    member = trial.suggest_categorical(FAMILY, tuple(recs))
    return MemberSpec(member, recs[member].suggest(Prefixed(trial, member), s, threads, encodings))


def run(recs: Records, features_dir: str, specs: list[MemberSpec], with_test: bool, keep: bool = False
        ) -> list[dict[str, Any]]:
    """A group's trials (one member's: group() keeps members apart) run by the member's own run function; each
    result names its member."""
    member = specs[0].family
    if any(m.family != member for m in specs):
        raise ValueError(f"a union group mixes families: {sorted({m.family for m in specs})}")
    rows = recs[member].run(features_dir, [m.spec for m in specs], with_test, keep)
    return [{**r, "member": member} for r in rows]


def base(recs: Records, m: MemberSpec) -> str:
    """The features variant the member's spec reads."""
    return recs[m.family].base(m.spec)


def group(recs: Records, m: MemberSpec) -> Hashable:
    """Specs of one member that its own record trains together (an MLP population); else each alone."""
    fam = recs[m.family]
    # a member whose populations are only a trial's batch siblings (realmlp) trains alone here: the union asks none
    together = fam.group is not None and not fam.siblings_only
    return (m.family, fam.group(m.spec)) if together else (m.family, id(m))


def facts(recs: Records, r: dict[str, Any]) -> dict[str, Any]:
    """The member's facts of a result, and the member's name."""
    return {"member": r["member"], **recs[r["member"]].facts(r)}


def metrics(recs: Records, r: dict[str, Any]) -> dict[str, float]:
    """The member's MLflow metrics of a result."""
    return recs[r["member"]].metrics(r)


def note(recs: Records, r: dict[str, Any]) -> str:
    """The log line's member and the member's note."""
    return f" [{r['member']}]" + recs[r["member"]].note(r)


def replay(recs: Records, s: Any, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The member's replay of its own params, joined again."""
    member, own = split(params)
    s, own = recs[member].replay(s, own)
    return s, joined(member, own)


def cap(recs: Records, m: MemberSpec, seconds: float) -> MemberSpec:
    """The member's spec capped at `seconds` (every member of a union can be stopped mid-fit)."""
    return dataclasses.replace(m, spec=recs[m.family].cap(m.spec, seconds))


def on_device(recs: Records, m: MemberSpec, device: str) -> MemberSpec:
    """The member's spec on `device`."""
    return dataclasses.replace(m, spec=recs[m.family].on_device(m.spec, device))
