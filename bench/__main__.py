"""Run every benchmark in `bench/` in turn: `python -m bench` (or `make bench`).

`python -m bench NAME...` runs only those; `python -m bench --help` lists them.
"""

import importlib
import pkgutil
import sys

import bench


def main() -> None:
    available = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__.strip())
        print("benchmarks: " + ", ".join(available))
        return
    for name in sys.argv[1:] or available:
        print(f"== bench.{name} ==", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
