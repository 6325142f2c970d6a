"""Print how long seeded worlds take to generate and serialise (figures only, no asserts).

    .venv/bin/python bench/world_generation.py [--size 100000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpp_sandbox.fixtures.worlds import World, build


def _timed(label: str, func: object, *args: object, **kwargs: object) -> object:
    start = time.perf_counter()
    result = func(*args, **kwargs)  # type: ignore[operator]
    print(f"{label:<40} {time.perf_counter() - start:8.3f} s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ("demo", "edge-cases"):
        _timed(f"build({name!r})", build, name, seed=args.seed)
    world = _timed(f"build('load', size={args.size:,})", build, "load", args.seed, args.size)
    assert isinstance(world, World)
    compact = _timed("dumps(indent=False)", world.dumps, indent=False)
    pretty = _timed("dumps() (the CLI's format)", world.dumps)
    assert isinstance(compact, bytes) and isinstance(pretty, bytes)
    _timed("World.loads(compact)", World.loads, compact)
    print(f"{'participations':<40} {len(world.participations):8,}")
    sizes = f"{len(compact) / 1e6:8.1f} / {len(pretty) / 1e6:.1f} MB"
    print(f"{'JSON size, compact / indented':<40} {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
