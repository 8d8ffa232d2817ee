"""Run a fuzz target: ``python tests/fuzz/run.py TARGET [--runs N | --seconds S]``.

With atheris installed (``pip install atheris``: coverage-guided, libFuzzer's mutations) it drives
the target under atheris with a per-input timeout and an RSS limit; without it, a seeded mutation
driver (bit flips, byte insertions and deletions, truncation, splices of the seeds, boundary
integers) does. Either way an input that raises anything but the target's documented refusal, takes
longer than ``--timeout`` seconds, or needs more than ``--memory-mb`` of address space is a
finding: the input is written to ``--crashes`` and the run exits 1. ``--json`` writes the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from targets import TARGETS, seeds

_INTERESTING = [b"\x00", b"\xff", b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff\xff\xff\xff\x7f", b"-1", b"1e999", b"NaN"]


class _Timeout(Exception):
    pass


def _mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[rng.randint(0, len(b)) : rng.randint(0, len(b))] = bytes(
                rng.randrange(256) for _ in range(rng.randint(1, 8))
            )
        elif op == 2 and b:
            a = rng.randrange(len(b))
            del b[a : a + rng.randint(1, 16)]
        elif op == 3 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 4:
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            b = b[: rng.randint(0, len(b))] + bytearray(other[cut:])
        else:
            pos = rng.randint(0, len(b))
            b[pos:pos] = rng.choice(_INTERESTING)
    return bytes(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--runs", type=int, default=None, help="inputs to try (default: until --seconds)")
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds one input may take")
    ap.add_argument("--memory-mb", type=int, default=4096, help="address-space bound of the process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crashes", default="fuzz-findings", help="folder for inputs that are findings")
    ap.add_argument("--engine", choices=["auto", "atheris", "mutation"], default="auto")
    ap.add_argument("--json", default=None, help="write the counts here")
    args = ap.parse_args()
    fn, corpus = TARGETS[args.target], seeds(args.target)
    for s in corpus:
        fn(s)  # the seeds must pass: a target that refuses its own seeds fuzzes nothing
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "mutation"
    if engine == "atheris":
        return _atheris(fn, corpus, args)
    resource.setrlimit(resource.RLIMIT_AS, (args.memory_mb << 20, resource.RLIM_INFINITY))

    def alarm(signum: int, frame: object) -> None:
        raise _Timeout

    signal.signal(signal.SIGALRM, alarm)
    rng = random.Random(args.seed)
    t0, n = time.time(), 0
    while (args.runs is None or n < args.runs) and time.time() - t0 < args.seconds:
        data = _mutate(rng.choice(corpus), rng, corpus)
        n += 1
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
        try:
            fn(data)
        except _Timeout:
            return _finding(args, data, n, f"took more than {args.timeout} s")
        except MemoryError:
            return _finding(args, data, n, f"needed more than {args.memory_mb} MB")
        except Exception:
            return _finding(args, data, n, traceback.format_exc())
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if n % 50 == 0 and len(corpus) < 256:
            corpus.append(data)  # keep some mutants: later mutations go deeper
    counts = {"target": args.target, "engine": engine, "inputs": n, "seconds": time.time() - t0, "findings": 0}
    print(json.dumps(counts))
    if args.json:
        Path(args.json).write_text(json.dumps(counts) + "\n")
    return 0


def _finding(args: argparse.Namespace, data: bytes, n: int, why: str) -> int:
    out = Path(args.crashes)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.target}-{n}.bin"
    path.write_bytes(data)
    print(f"FINDING in {args.target} after {n} inputs ({path}):\n{why}", file=sys.stderr)
    return 1


def _atheris(fn, corpus: list[bytes], args: argparse.Namespace) -> int:
    import tempfile

    import atheris

    seed_dir = Path(
        tempfile.mkdtemp(prefix=f"advface-fuzz-{args.target}-")
    )  # libFuzzer's corpus: kept out of the findings
    Path(args.crashes).mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(corpus):
        (seed_dir / f"seed{i}").write_bytes(s)
    argv = [sys.argv[0], str(seed_dir), f"-timeout={int(args.timeout)}", f"-rss_limit_mb={args.memory_mb}",
            f"-max_total_time={int(args.seconds)}", f"-artifact_prefix={args.crashes}/{args.target}-",
            f"-seed={args.seed + 1}", "-print_final_stats=1"]  # fmt: skip
    if args.runs is not None:
        argv.append(f"-runs={args.runs}")
    atheris.instrument_all()  # the target's modules are loaded by the seed pass: coverage over all of them
    atheris.Setup(argv, fn)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
