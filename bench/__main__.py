"""``python -m bench NAME [options]``: run one benchmark (see bench/README.md)."""

from __future__ import annotations

import sys

from bench import ingest, memory, moderation, timeline

BENCHMARKS = {"ingest": ingest.main, "memory": memory.main, "moderation": moderation.main,
              "timeline": timeline.main}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        print(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    return BENCHMARKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
