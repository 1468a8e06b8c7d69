"""Benchmark SharedEmbedding against its peers, forward and forward+backward, in one run.

    python scripts/bench_embedding.py                    # CPU set on CPU, the anchors on GPU
    python scripts/bench_embedding.py --shapes anchors --dtypes bf16 --markdown docs/run.md \\
        --jsonl run.jsonl

Per shape, dtype and pass it times, in the same run (interleaved rounds on CPU):
  mmembed        the layer as users build it (backend="auto": the plan of the cost model)
  mmembed det    the same with deterministic=True under torch.use_deterministic_algorithms(True)
  eager          F.linear(F.embedding(ids, E), W, b)  (nn.Embedding + nn.Linear)
  eager folded   F.embedding(ids, torch.addmm(b, E, W.T))
  compile        torch.compile of eager
  liger          Liger-Kernel's LigerEmbedding function + F.linear (CUDA, when importable)
  gemm           the GEMMs alone on pre-gathered rows (forward: 1; forward+backward: 3)
  gather         the lookup alone (F.embedding, and its backward)
and on CUDA the candidates behind backend="auto": triton (the kernels' plan for the shape
class), torch path, and for the direct class the gather-fused forward GEMM (triton fused).

--quantized instead times inference (forward, no grad) of the layer with its float table
("float": the plan users get; "float direct": the same gather-then-GEMM plan the quantised
tables run) against the same layer after quantize("int8") and quantize("int4"), and records
the table's bytes and the rows' relative error (quantization_report()).
Ratios: mmembed / eager, mmembed / best peer (the fastest of eager, eager folded, compile,
liger), mmembed /
limit (the roofline of mmembed.ops.embed_project.cost_model, per device), det / fast. Below 1
is faster. Each case is appended to --jsonl as it finishes; on CUDA the run ends with the
entries of cost_model.AUTO and DIRECT_FORWARD that its measurements support.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import date

# torch.use_deterministic_algorithms needs this before cuBLAS starts
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mmembed import SharedEmbedding  # noqa: E402
from mmembed.ops.embed_project import cost_model  # noqa: E402

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
PEERS = ("eager", "eager folded", "compile", "liger")
TORCH_CANDIDATES = ("torch path", "mmembed")  # mmembed: backend="auto", the torch path today
RATIOS = ("mmembed/eager", "mmembed/best peer", "mmembed/limit", "det/fast")
COLUMNS = ("mmembed", "mmembed det", "eager", "eager folded", "compile", "liger", "gemm",
           "gather", "triton", "torch path", "triton fused")  # fmt: skip


@dataclass
class Case:
    name: str
    shape: tuple[int, int, int, int]
    dtype: str
    mode: str  # "fwd" or "fwd+bwd"
    shape_class: str = ""
    plan: str = ""
    times: dict[str, float] = field(default_factory=dict)
    limit: float | None = None

    def ratio(self, a: str, b: str | float | None) -> float | None:
        num = self.times.get(a)
        den = self.times.get(b) if isinstance(b, str) else b
        return num / den if num and den else None

    @property
    def best_peer(self) -> float | None:
        peers = [self.times[p] for p in PEERS if p in self.times]
        return min(peers) if peers else None

    def record(self) -> dict:
        return {
            **asdict(self),
            "mmembed/eager": self.ratio("mmembed", "eager"),
            "mmembed/best peer": self.ratio("mmembed", self.best_peer),
            "mmembed/limit": self.ratio("mmembed", self.limit),
            "det/fast": self.ratio("mmembed det", "mmembed"),
        }


def time_ms(fns: dict, device: str, reps: int) -> dict[str, float]:
    """Median time in ms of each function: on CUDA triton.testing.do_bench; on CPU the
    process's CPU time (time.process_time), in interleaved rounds so that clock and cache drift
    hit the candidates alike. CPU time, not wall time: on shared cores a long call is preempted
    more often than a short one, which would inflate wall-time ratios in favour of the faster.
    """
    if device == "cuda":
        import triton.testing

        return {
            name: triton.testing.do_bench(fn, warmup=25, rep=max(reps, 50), return_mode="median")
            for name, fn in fns.items()
        }
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(3):
            fn()
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            samples[name].append((time.process_time() - start) * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


def make_runner(forward, params, mode: str, grad, deterministic: bool = False):
    def run():
        with contextlib.ExitStack() as stack:
            if deterministic:
                stack.callback(torch.use_deterministic_algorithms, False)
                torch.use_deterministic_algorithms(True)
            if mode == "fwd":
                with torch.no_grad():
                    return forward()
            for p in params:
                p.grad = None
            forward().backward(grad)

    return run


def liger_embedding():
    try:
        from liger_kernel.ops import LigerEmbeddingFunction
    except ImportError:
        return None
    return LigerEmbeddingFunction.apply


@contextlib.contextmanager
def direct_forward(choice: str):
    saved = dict(cost_model.DIRECT_FORWARD)
    cost_model.DIRECT_FORWARD.update({k: choice for k in saved})
    try:
        yield
    finally:
        cost_model.DIRECT_FORWARD.update(saved)


def bench_case(case: Case, device: str, reps: int, use_compile: bool, check_ids: bool):
    V, D, H, N = case.shape
    dtype = DTYPES[case.dtype]
    torch.manual_seed(0)

    def layer_with(**kw):
        torch.manual_seed(0)
        return SharedEmbedding(V, D, out_features=H, check_ids=check_ids, device=device,
                               dtype=dtype, **kw)  # fmt: skip

    layer = layer_with()
    E, W, b = layer.weight, layer.projection.weight, layer.projection.bias
    params = [E, W, b]
    ids = torch.randint(0, V, (N,), device=device)
    grad = torch.randn(N, H, device=device, dtype=dtype)
    rows = F.embedding(ids, E).detach()
    plan = layer.plan(N)
    case.shape_class = plan.shape_class
    case.plan = f"{plan.backend}-{'fold' if plan.fold else 'direct'}"
    spec = cost_model.spec_for(torch.device(device))
    distinct = float(ids.unique().numel())
    case.limit = cost_model.roofline_ms(case.shape, case.dtype, case.mode, spec, distinct)

    def eager():
        return F.linear(F.embedding(ids, E), W, b)

    def folded():
        return F.embedding(ids, torch.addmm(b, E, W.t()))

    def gemm():
        if case.mode == "fwd":
            return torch.addmm(b, rows, W.t())
        return torch.addmm(b, rows, W.t()), grad @ W, grad.t() @ rows

    def gather_forward():
        return F.embedding(ids, E)

    det_layer = layer_with(deterministic=True)
    fns = {
        "mmembed": make_runner(lambda: layer(ids), params, case.mode, grad),
        "mmembed det": make_runner(
            lambda: det_layer(ids),
            list(det_layer.parameters()),
            case.mode,
            grad,
            deterministic=True,
        ),  # fmt: skip
        "eager": make_runner(eager, params, case.mode, grad),
        "eager folded": make_runner(folded, params, case.mode, grad),
        "gemm": make_runner(gemm, [], "fwd", grad),
        "gather": make_runner(gather_forward, [E], case.mode, grad[:, :1].expand(N, D)),
    }
    if use_compile:
        torch._dynamo.reset()
        fns["compile"] = make_runner(torch.compile(eager, dynamic=False), params, case.mode, grad)
    liger = liger_embedding() if device == "cuda" else None
    if liger is not None:
        fns["liger"] = make_runner(lambda: F.linear(liger(E, ids), W, b), params, case.mode, grad)
    if device == "cuda":
        for name, kw in (("triton", dict(backend="triton")), ("torch path", dict(backend="torch"))):
            other = layer_with(**kw)
            fns[name] = make_runner(
                lambda m=other: m(ids), list(other.parameters()), case.mode, grad
            )
        if plan.shape_class == cost_model.LARGE:
            fused = layer_with(backend="triton")
            run_fused = make_runner(lambda: fused(ids), list(fused.parameters()), case.mode, grad)

            def fused_forward():
                with direct_forward("fused"):
                    run_fused()

            fns["triton fused"] = fused_forward
    case.times = time_ms(fns, device, reps)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_table(cases: list[Case]) -> str:
    present = [c for c in COLUMNS if any(c in case.times for case in cases)]
    head = ["shape (V, D, H, N)", "dtype", "pass", "class", "plan", *(f"{c} ms" for c in present),
            "limit ms", *RATIOS]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        rec = c.record()
        cells = [f"{c.name} {c.shape}", c.dtype, c.mode, c.shape_class, c.plan,
                 *(_fmt(c.times.get(col)) for col in present), _fmt(c.limit),
                 *(_fmt(rec[k], 2) for k in RATIOS)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def suggest_tables(cases: list[Case], spec_name: str) -> str:
    """The AUTO / DIRECT_FORWARD entries these measurements support (CUDA runs): the kernels
    only for a class where they beat the torch path by 5% forward+backward in every case and
    are not slower forward."""
    auto, fused = dict(cost_model.AUTO["cuda"]), []  # unmeasured classes keep their entry
    for klass in cost_model.SHAPE_CLASSES:
        mine = [c for c in cases if c.shape_class == klass and "triton" in c.times]
        if not mine:
            continue

        # against the faster torch option: the torch path folding by class, or what auto runs
        def vs_torch(c):
            return c.ratio("triton", min(c.times.get(k, float("inf")) for k in TORCH_CANDIDATES))

        both = [vs_torch(c) for c in mine if c.mode == "fwd+bwd"]
        fwd = [vs_torch(c) for c in mine if c.mode == "fwd"]
        wins = both and max(both) < 0.95 and (not fwd or max(fwd) <= 1.0)
        if wins:
            auto[klass] = cost_model.TRITON
        fused += [c.ratio("triton fused", "triton") for c in mine if "triton fused" in c.times]
    lines = [f'cost_model.AUTO["{spec_name}"] = {auto!r}']
    if fused:
        choice = "fused" if max(fused) < 0.95 else "addmm"
        lines.append(f'cost_model.DIRECT_FORWARD["{spec_name}"] = "{choice}"  '
                     f"# triton fused / addmm: {', '.join(f'{r:.2f}' for r in fused)}")  # fmt: skip
    return "\n".join(lines)


def cpu_bf16_note() -> str:
    """Whether this CPU runs bf16 GEMMs natively, and what a bf16 GEMM costs against fp32."""
    a, w = torch.randn(4096, 128), torch.randn(256, 128)
    times = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, y = a.to(dtype), w.to(dtype)
        times[name] = time_ms({name: lambda x=x, y=y: x @ y.t()}, "cpu", 5)[name]
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return (f"CPU bf16 GEMM {'native (oneDNN)' if native else 'not native (no AVX512-BF16/AMX)'}:"
            f" 4096x128 @ 128x256 takes {times['bf16']:.2f} ms in bf16, {times['fp32']:.2f} ms"
            f" in fp32; mmembed's torch path runs bf16 GEMMs in"
            f" {str(cost_model.cpu_gemm_dtype(torch.bfloat16)).split('.')[-1]}")  # fmt: skip


def bench_quantized(name: str, shape, dtype: str, device: str, reps: int, check_ids: bool):
    """One JSON-ready record: forward times and table sizes, float against int8 and int4."""
    V, D, H, N = shape
    torch.manual_seed(0)
    layer = SharedEmbedding(V, D, out_features=H, check_ids=check_ids, device=device,
                            dtype=DTYPES[dtype]).eval()  # fmt: skip
    direct = copy.deepcopy(layer)
    direct.strategy = "direct"
    ids = torch.randint(0, V, (N,), device=device)
    layers = {"float": layer, "float direct": direct}
    reports = {}
    for mode in ("int8", "int4"):
        layers[mode] = copy.deepcopy(layer).quantize(mode)
        reports[mode] = layers[mode].quantization_report()
    fns = {k: make_runner(lambda m=m: m(ids), [], "fwd", None) for k, m in layers.items()}
    times = time_ms(fns, device, reps)
    float_bytes = reports["int8"]["float_bytes"]
    return {
        "name": name, "shape": list(shape), "dtype": dtype, "mode": "fwd quantized",
        "times": times,
        "table_bytes": {"float": float_bytes,
                        **{m: r["quantized_bytes"] for m, r in reports.items()}},
        "relative_error": {m: r["relative_error"] for m, r in reports.items()},
        **{f"{m}/float": times[m] / times["float"] for m in reports},
        **{f"{m}/float direct": times[m] / times["float direct"] for m in reports},
        **{f"{m} bytes/float": r["quantized_bytes"] / float_bytes for m, r in reports.items()},
    }  # fmt: skip


def format_quantized(records: list[dict]) -> str:
    rows = ["| shape (V, D, H, N) | dtype | float ms | float direct ms | int8 ms | int4 ms "
            "| int8 / float direct | int4 / float direct | table KiB float / int8 / int4 "
            "| rel. error int8 / int4 |", "|" + "---|" * 10]  # fmt: skip
    for r in records:
        t, b, e = r["times"], r["table_bytes"], r["relative_error"]
        kib = " / ".join(f"{b[k] / 2**10:.1f}" for k in ("float", "int8", "int4"))
        rows.append(
            f"| {r['name']} {tuple(r['shape'])} | {r['dtype']} | {t['float']:.3f} "
            f"| {t['float direct']:.3f} | {t['int8']:.3f} | {t['int4']:.3f} "
            f"| {r['int8/float direct']:.2f} | {r['int4/float direct']:.2f} | {kib} "
            f"| {e['int8']:.4f} / {e['int4']:.4f} |"
        )
    return "\n".join(rows)


def append_jsonl(path: str, device_name: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"device": device_name, "date": str(date.today()),
                            "torch": torch.__version__, **record}) + "\n")  # fmt: skip


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
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time torch.compile of the eager baseline")  # fmt: skip
    parser.add_argument("--check-ids", action=argparse.BooleanOptionalAction, default=None,
                        help="host-side id check in mmembed (default: on for CPU, off for GPU "
                        "timing, where it adds a sync)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: the cores are shared)")  # fmt: skip
    parser.add_argument("--reps", type=int, default=None, help="default: 15 on CPU, 100 on GPU")
    parser.add_argument("--markdown", help="append the table to this markdown file")
    parser.add_argument("--jsonl", help="append one JSON line per case as it finishes")
    parser.add_argument("--quantized", action="store_true",
                        help="time int8/int4 tables against the float one (forward)")  # fmt: skip
    args = parser.parse_args(argv)

    on_gpu = args.device == "cuda"
    kind = args.shapes if args.shapes != "auto" else ("anchors" if on_gpu else "cpu")
    shapes = {**(ANCHOR_SHAPES if kind in ("anchors", "all") else {}),
              **(CPU_SHAPES if kind in ("cpu", "all") else {})}  # fmt: skip
    if args.only:
        shapes = {k: v for k, v in shapes.items() if k in args.only}
    dtypes = args.dtypes or (["bf16"] if on_gpu else ["fp32", "bf16"])
    check_ids = (not on_gpu) if args.check_ids is None else args.check_ids
    reps = args.reps or (100 if on_gpu else 15)
    if on_gpu:
        device_name = torch.cuda.get_device_name()
        spec_name = cost_model.spec_for(torch.device("cuda")).name
    else:
        torch.set_num_threads(args.threads)
        device_name = f"{platform.processor() or platform.machine()} CPU, {args.threads} thread(s)"
        spec_name = "cpu"
    clock = "do_bench median ms" if on_gpu else "median CPU ms (process time)"
    header = (f"Device: {device_name}; torch {torch.__version__}; date {date.today()}; {clock}; "
              f"check_ids={check_ids}; reps={reps}")  # fmt: skip
    print(header, flush=True)
    if not on_gpu:
        header += "\n\n" + cpu_bf16_note()
        print(header.splitlines()[-1], flush=True)

    if args.quantized:
        records = []
        for name, shape in shapes.items():
            for dtype in dtypes:
                records.append(bench_quantized(name, shape, dtype, args.device, reps, check_ids))
                print(json.dumps(records[-1]), flush=True)
                if args.jsonl:
                    append_jsonl(args.jsonl, device_name, records[-1])
        text = f"\n{header}\n\n{format_quantized(records)}\n"
        print(text)
        if args.markdown:
            with open(args.markdown, "a") as f:
                f.write(text)
        return

    cases = [Case(n, s, d, m) for n, s in shapes.items() for d in dtypes for m in args.modes]
    for case in cases:
        bench_case(case, args.device, reps, args.compile, check_ids)
        rec = case.record()
        print(f"{case.name:18s} {case.dtype:5s} {case.mode:8s} {case.plan:13s} "
              + " ".join(f"{k}={v:.3f}ms" for k, v in case.times.items())
              + f" mmembed/best_peer={_fmt(rec['mmembed/best peer'], 2)}"
              + f" mmembed/limit={_fmt(rec['mmembed/limit'], 2)}", flush=True)  # fmt: skip
        if args.jsonl:
            append_jsonl(args.jsonl, device_name, rec)

    table = format_table(cases)
    text = f"\n{header}\n\n{table}\n"
    if on_gpu:
        text += f"\nEntries these measurements support:\n\n{suggest_tables(cases, spec_name)}\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
