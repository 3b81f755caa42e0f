"""Run every benchmark in `bench/` in turn: `python -m bench` (or `make bench`)."""

import importlib
import pkgutil
import sys

import bench


def main() -> None:
    names = sys.argv[1:] or sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )
    for name in names:
        print(f"== bench.{name} ==", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
