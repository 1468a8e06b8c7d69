"""One AOTInductor attempt per process, for scripts/gpu_check_inference.sh (a segfault there
ends only that attempt).

    python scripts/aoti_probe.py compile VARIANT PACKAGE   # export + aoti_compile_and_package
    python scripts/aoti_probe.py load VARIANT PACKAGE [--register-op-first]

VARIANT: ``op`` (SharedEmbedding on the mmembed::embed_project triton_op), ``op-embed-binary``
(the same compiled with ``aot_inductor.embed_kernel_binary``), ``inductor-only``
(nn.Embedding + nn.Linear: no custom op, to tell the op from the platform). ``load`` compares
the package's output with eager and prints ``OK max-diff``.
"""

import argparse
import sys

import torch

VARIANTS = ("op", "op-embed-binary", "inductor-only")


def model_and_input(variant: str):
    torch.manual_seed(0)
    if variant == "inductor-only":
        model = torch.nn.Sequential(torch.nn.Embedding(1000, 128), torch.nn.Linear(128, 256))
    else:
        from mmembed import SharedEmbedding

        model = SharedEmbedding(1000, 128, out_features=256, backend="triton", check_ids=False)
    return model.cuda().eval(), torch.randint(0, 1000, (4, 64), device="cuda")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=("compile", "load"))
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("package")
    parser.add_argument("--register-op-first", action="store_true")
    args = parser.parse_args()
    if args.action == "compile":
        from torch._inductor import aoti_compile_and_package

        model, ids = model_and_input(args.variant)
        program = torch.export.export(model, (ids,))
        configs = (
            {"aot_inductor.embed_kernel_binary": True} if args.variant == "op-embed-binary" else {}
        )
        aoti_compile_and_package(program, package_path=args.package, inductor_configs=configs)
        print("compiled", args.package)
        return 0
    if args.register_op_first:
        import mmembed.ops.embed_project  # noqa: F401
    from torch._inductor import aoti_load_package

    runner = aoti_load_package(args.package)
    model, ids = model_and_input(args.variant)  # imports mmembed (the op) for op variants
    with torch.no_grad():
        diff = (runner(ids) - model(ids)).abs().max().item()
    print(f"OK {diff:.3g}")
    return 0 if diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
