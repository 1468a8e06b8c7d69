"""Benchmark SharedEmbedding against ``F.linear(F.embedding(ids, E), W, b)`` (eager and
``torch.compile``), forward and forward+backward, measured in the same run.

    python scripts/bench_embedding.py                      # CPU set on CPU, anchors on GPU
    python scripts/bench_embedding.py --shapes anchors --dtypes bf16 --markdown docs/run.md

Per case it prints mmembed ms, eager ms, compile ms, mmembed/eager (below 1 is faster) and, on a
GPU, mmembed/roofline: the limits of the op's cost model
(``mmembed.ops.embed_project.cost_model.roofline_ms``, per device; forward limit =
max(2*N*D*H / peak, bytes / bandwidth), forward+backward limit = 3x that). Results with device
and date: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass, field
from datetime import date

import torch
import torch.nn.functional as F

from mmembed import SharedEmbedding
from mmembed.ops.embed_project import cost_model

ANCHOR_SHAPES = {  # (V, D, H, N)
    "chars-asr": (128, 512, 512, 65536),
    "albert-factorized": (30000, 128, 4096, 16384),
    "caption-subword": (16384, 512, 768, 32768),
    "gpt2-vocab": (50257, 768, 768, 16384),
    "llama-vocab": (128256, 1024, 4096, 8192),
}
CPU_SHAPES = {
    "cpu-chars": (64, 128, 256, 4096),
    "cpu-subword": (8000, 256, 256, 4096),
    "cpu-wide": (2000, 128, 512, 8192),
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
@dataclass
class Case:
    name: str
    shape: tuple[int, int, int, int]
    dtype: str
    mode: str  # "fwd" or "fwd+bwd"
    times: dict[str, float] = field(default_factory=dict)
    strategy: str = ""


def roofline_ms(shape, dtype: str, mode: str, device_name: str) -> float | None:
    spec = cost_model.device_spec(device_name)
    return None if spec is None else cost_model.roofline_ms(shape, dtype, mode, spec)


def time_ms(fns: dict, device: str, reps: int) -> dict[str, float]:
    """Median wall time in ms of each function.

    On CPU the candidates are timed in interleaved rounds so that clock and cache drift hit
    them alike (a sequential run showed +-10% order effects on 2 cores).
    """
    if device == "cuda":
        import triton.testing

        return {
            name: triton.testing.do_bench(fn, warmup=25, rep=max(reps, 50), return_mode="median")
            for name, fn in fns.items()
        }
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(5):
            fn()
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


def make_runner(forward, params, mode: str, grad):
    if mode == "fwd":

        def run():
            with torch.no_grad():
                forward()

        return run

    def run():
        for p in params:
            p.grad = None
        forward().backward(grad)

    return run


def bench_case(case: Case, device: str, reps: int, use_compile: bool, check_ids: bool):
    V, D, H, N = case.shape
    dtype = DTYPES[case.dtype]
    torch.manual_seed(0)
    layer = SharedEmbedding(V, D, H, check_ids=check_ids, device=device, dtype=dtype)
    E, W, b = layer.weight, layer.projection.weight, layer.projection.bias
    ids = torch.randint(0, V, (N,), device=device)
    grad = torch.randn(N, H, device=device, dtype=dtype)
    case.strategy = "folded" if layer._use_folded(N) else "direct"
    if device != "cuda":
        case.strategy = "torch"

    def eager():
        return F.linear(F.embedding(ids, E), W, b)

    params = [E, W, b]
    runners = {
        "mmembed": make_runner(lambda: layer(ids), params, case.mode, grad),
        "eager": make_runner(eager, params, case.mode, grad),
    }
    if use_compile:
        torch._dynamo.reset()
        runners["compile"] = make_runner(
            torch.compile(eager, dynamic=False), params, case.mode, grad
        )
    case.times = time_ms(runners, device, reps)


def _ratio(a: float, b: float | None) -> float | None:
    return a / b if b else None


def _fmt(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_table(cases: list[Case], device_name: str) -> str:
    head = (
        "| shape (V, D, H, N) | dtype | pass | strategy | mmembed ms | eager ms | compile ms "
        "| mmembed/eager | mmembed/compile | limit ms | mmembed/limit |"
    )
    lines = [head, "|" + "---|" * 11]
    for c in cases:
        t = c.times
        limit = roofline_ms(c.shape, c.dtype, c.mode, device_name)
        comp = t.get("compile")
        cells = [
            f"{c.name} {c.shape}", c.dtype, c.mode, c.strategy, _fmt(t["mmembed"], 3),
            _fmt(t["eager"], 3), _fmt(comp, 3), _fmt(_ratio(t["mmembed"], t["eager"]), 2),
            _fmt(_ratio(t["mmembed"], comp), 2), _fmt(limit, 3),
            _fmt(_ratio(t["mmembed"], limit), 2),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", choices=["auto", "anchors", "cpu", "all"], default="auto")
    parser.add_argument("--only", nargs="*", help="shape names to keep")
    parser.add_argument("--dtypes", nargs="+", default=None, choices=list(DTYPES))
    parser.add_argument(
        "--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"]
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile of the eager baseline (default: on GPU)",
    )
    parser.add_argument("--check-ids", action=argparse.BooleanOptionalAction, default=None,
                        help="host-side id check in mmembed (default: on for CPU, off for GPU "
                        "timing, where it adds a sync)")  # fmt: skip
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--markdown", help="append the table to this markdown file")
    args = parser.parse_args(argv)

    on_gpu = args.device == "cuda"
    kind = args.shapes if args.shapes != "auto" else ("anchors" if on_gpu else "cpu")
    shapes = {**(ANCHOR_SHAPES if kind in ("anchors", "all") else {}),
              **(CPU_SHAPES if kind in ("cpu", "all") else {})}  # fmt: skip
    if args.only:
        shapes = {k: v for k, v in shapes.items() if k in args.only}
    dtypes = args.dtypes or (["bf16"] if on_gpu else ["fp32", "bf16"])
    use_compile = on_gpu if args.compile is None else args.compile
    check_ids = (not on_gpu) if args.check_ids is None else args.check_ids
    device_name = torch.cuda.get_device_name() if on_gpu else platform.processor() or "cpu"
    if not on_gpu:
        torch.set_num_threads(torch.get_num_threads())

    cases = [Case(n, s, d, m) for n, s in shapes.items() for d in dtypes for m in args.modes]
    for case in cases:
        bench_case(case, args.device, args.reps, use_compile, check_ids)
        t = case.times
        print(f"{case.name:18s} {case.dtype:5s} {case.mode:8s} {case.strategy:7s} "
              + " ".join(f"{k}={v:.3f}ms" for k, v in t.items())
              + f" mmembed/eager={t['mmembed'] / t['eager']:.2f}", flush=True)  # fmt: skip

    header = (
        f"Device: {device_name}; torch {torch.__version__}; date {date.today()}; "
        f"median ms; check_ids={check_ids}"
    )
    table = format_table(cases, device_name)
    print("\n" + header + "\n\n" + table)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n{header}\n\n{table}\n")


if __name__ == "__main__":
    main()
