"""The functions a query's aggregate list may use, by their config name, and the
questions every other module asks about a configured entry.

A new function is one class fulfilling its base's contract (AggregateFunction in
aggregate.py, or Projection in projection.py), listed in FUNCTIONS, with its ways of
being configured in tests/test_functions.py, which checks the contract for each.
"""

from __future__ import annotations

from goldstream.functions.aggregate import Avg, Count, CountIf, Max, MaxBy, Min, MinBy, StddevSamp, Sum
from goldstream.functions.base import Arguments, Function
from goldstream.functions.projection import Ratio
from goldstream.functions.value_sets import CountDistinct, Median, Percentile

# The order is the one the config's error message lists them in.
FUNCTIONS: dict[str, type[Function]] = {
    f.fn: f for f in (Count, CountIf, CountDistinct, Avg, Sum, Min, Max, StddevSamp, Percentile, Median,
                      MaxBy, MinBy, Ratio)
}
FUNCTION_NAMES = tuple(FUNCTIONS)
# Every config argument some function takes (config.AggregateSpec has exactly these).
ARGUMENTS = tuple(dict.fromkeys(a for f in FUNCTIONS.values() for a in f.arguments()))


def check_arguments(args: Arguments) -> None:
    """Raise ValueError naming the first rule the entry's arguments break."""
    function = FUNCTIONS[args.fn]
    takes = function.arguments()
    for needed in ("column", "by"):
        if needed in function.required_arguments() and not getattr(args, needed):
            raise ValueError(f"aggregate {args.name!r}: fn = {args.fn!r} needs a {needed!r}")
    if "column" not in takes and args.column:
        raise ValueError(f"aggregate {args.name!r}: fn = {args.fn!r} takes no 'column'")
    function.check_values(args)
    for stray in ARGUMENTS:
        if stray not in takes and stray != "column" and getattr(args, stray) is not None:
            raise ValueError(f"aggregate {args.name!r}: {_owned_arguments(stray)}")


def _owned_arguments(argument: str) -> str:
    """Which functions take `argument` (and the other arguments only they take)."""
    owners = [fn for fn, f in FUNCTIONS.items() if argument in f.arguments()]
    group = [a for a in ARGUMENTS if [fn for fn, f in FUNCTIONS.items() if a in f.arguments()] == owners]
    return (
        "/".join(f"'{a}'" for a in group) + " only apply to fn = " + " or ".join(f"'{fn}'" for fn in owners)
    )


def build(args: Arguments) -> Function:
    """The function computing a checked entry."""
    return FUNCTIONS[args.fn].from_arguments(args)
