"""Time every registered method against vanilla: a thin wrapper around `python -m mixbench.bench`.

    python benchmarks/bench_methods.py --sizes cifar,imagenet --repeats 7 --graphcut

See benchmarks/README.md for what is measured and the latest table.
"""

from mixbench.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
