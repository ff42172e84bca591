"""The GPU bench: every method's iteration and the evaluation epoch of ddz against a reference-style
loop on the same device, in the same process, at CIFAR-10 shapes; one JSON and one markdown table.

    python bench/gpu.py                     # device auto (CUDA when visible); sized for < 8 min on an H100
    python bench/gpu.py --quick             # tiny shapes, a CPU-sized check that the bench works (< 1 min)
    python bench/gpu.py --out DIR           # writes DIR/gpu.json and DIR/gpu.md (default bench-out/)

What it times (random data in CIFAR-10's shape: 3x32x32, 10 classes; ConvNet-3 width 128; IPC 10;
batch_real 256), each row ddz against the reference-style loop of bench/distill_speed.py or
bench/eval_speed.py:
- DM: one iteration; DSA: one full iteration (10 outer steps, 9 x 50 inner epochs); DC: one outer
  step (the gradient matching of every class and the image update, no inner epochs);
- MTT: one iteration with syn_steps 20 (all 100 images per step), ddz unrolled and constant memory;
- the evaluation epoch (the protocol's: batch 256, DSA, SGD) of N = 1, 5, 25, 100 models: the
  reference-style loop (one net at a time), ddz sequential, ddz batched (one StackedNets), ddz
  batched with --cuda-graph, ddz batched with --amp bf16;
- the zoo's training epoch (10 seeds, 50,000 images, batch 256, no augmentation): one net at a time
  (reference-style), ddz one seed after another, ddz batched.
DM, DSA and DC also time ddz with --amp bf16.

Before timing, each row's loss is computed both ways on the same inputs and must agree (relative
1e-5; a disagreement is recorded, the bench goes on and exits with status 1 after writing): DM,
DSA and DC losses (bench/distill_speed.py's checks), MTT's unrolled and constant-memory losses
against the reference's unrolled loop, and one evaluation step (the loss of each of N
stacked models against the plain step of each net alone, then the weights after three steps of
--cuda-graph's GraphedStep against the eager step's). Checks run and everything is timed with
TF32 off (float32 arithmetic on both sides). On CUDA, one more ddz iteration of each method and
one evaluation epoch run under torch.cuda.set_sync_debug_mode("error"): "ok", or where it synced.

Seconds are medians of interleaved rounds after a warm-up (the warm-up, which includes cuDNN's
first calls and the CUDA graph capture, is in the JSON as first_iteration_seconds / warmup_s).
--quick: 4 classes of 1x16x16 images, IPC 2, width 16, DSA 2 outer x 1 inner, MTT syn_steps 3,
evaluation N = 1, 2, zoo 2 seeds x 32 images, one round, one CPU thread.

Not yet run on a GPU: the 8-minute size is an estimate from earlier H200 timings of
bench/eval_speed.py and bench/distill_speed.py (MTT), not a measurement.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import sys
import time
from argparse import Namespace
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import distill_speed as ds  # noqa: E402  (the bench folder's own modules)
import eval_speed as es  # noqa: E402

from ddz.distill.evaluate import fresh_net  # noqa: E402
from ddz.io import atomic_write_json, atomic_write_text  # noqa: E402
from ddz.nets.stacked import StackedNets  # noqa: E402
from ddz.training import GraphedStep, TrainStep  # noqa: E402

FULL = {"K": 10, "IPC": 10, "SIZE": 32, "CHANNELS": 3, "WIDTH": 128, "PER_CLASS": 300, "BATCH_REAL": 256}
QUICK = {"K": 4, "IPC": 2, "SIZE": 16, "CHANNELS": 1, "WIDTH": 16, "PER_CLASS": 20, "BATCH_REAL": 16}
TOLERANCE = 1e-5


@contextmanager
def float32_math():
    """TF32 off for convolutions and matmuls: both sides compute in float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def set_shapes(shapes: dict[str, int]) -> None:
    """The shared bench modules read their shapes from module globals."""
    for name, value in shapes.items():
        setattr(ds, name, value)
    es.K, es.IPC = shapes["K"], shapes["IPC"]
    es.SHAPE.update(channels=shapes["CHANNELS"], size=shapes["SIZE"])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check_eval_step(models: int, device: torch.device) -> dict:
    """One protocol step (no augmentation) of `models` fresh nets: ddz's stacked TrainStep against
    the plain step of each net alone (loss per copy, then weights); and three steps of GraphedStep
    (captured and replayed on CUDA) against three of TrainStep (weights)."""
    data = es.shaped_dataset(es.K * es.IPC, device)
    images, labels = data.train_images, data.train_labels
    seeds = list(range(models))
    nets = [fresh_net("convnet3", data, s, device) for s in seeds]
    hyper = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
    plain_losses, plain_weights = [], []
    for net in copy.deepcopy(nets):
        optimizer = torch.optim.SGD(net.parameters(), **hyper)
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        plain_losses.append(loss.detach())
        plain_weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    batch_x, batch_y = images.expand(models, *images.shape), labels.expand(models, len(labels))
    results = {}
    for kind, steps in ((TrainStep, 1), (TrainStep, 3), (GraphedStep, 3)):
        stacked = StackedNets(copy.deepcopy(nets))
        optimizer = torch.optim.SGD(stacked.parameters(), **hyper)
        step = kind(stacked, optimizer, images, models)
        for _ in range(steps):
            step.reset()
            step(batch_x, batch_y)
        weights = torch.stack([torch.cat([p.detach().flatten() for p in net.parameters()])
                               for net in stacked.nets()])
        results[kind.__name__, steps] = (step.total_loss / len(images), weights)
    loss, weights = results["TrainStep", 1]
    return {
        "models": models,
        "loss_rel_diff": relative(loss, torch.stack(plain_losses)),
        "weights_rel_diff": relative(weights, torch.stack(plain_weights)),
        "graphed_weights_rel_diff": relative(results["GraphedStep", 3][1], results["TrainStep", 3][1]),
    }


def eval_rows(args: Namespace, device: torch.device) -> list[dict]:
    rows = []
    for models in args.models:
        row = es.measure_eval(models, args.epochs, args.warmup, args.reps, device, True, False, graphed=True,
                              amp=True)
        row["check"] = check_eval_step(min(models, 5), device)
        rows.append(row)
        print(f"  eval N={models}: reference {row['reference_s_per_epoch']:.4f}s batched "
              f"{row['batched_s_per_epoch']:.4f}s graphed {row['graphed_s_per_epoch']:.4f}s", file=sys.stderr)
    return rows


def eval_sync(device: torch.device, models: int) -> str:
    """One batched evaluation epoch with --cuda-graph (after its graphs are captured) under sync
    debug mode."""
    from dataclasses import replace

    from ddz.distill.evaluate import EvalConfig

    data = es.shaped_dataset(es.K * es.IPC, device)
    run = es.ddz_training(data, list(range(models)), replace(EvalConfig(), cuda_graph=True), True)
    run(3)()  # warm-up, capture
    return ds.sync_free(run(1), str(device))


def markdown(result: dict) -> str:
    def s(v: float | None) -> str:
        return "" if v is None else f"{v:.4f} s" if v < 1 else f"{v:.2f} s"

    def x(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}x"

    lines = [
        f"Device: {result['device_name']} ({result['device']}), torch {result['torch']}, {result['date']}"
        f"{', --quick shapes' if result['quick'] else ''}; {result['threads']} CPU threads; TF32 off.",
        "",
        "| workload | reference-style | ddz | ratio | ddz --amp bf16 | ratio | loss check | sync |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"dm": "DM iteration", "dsa": "DSA iteration", "dc": "DC outer step"}
    for row in result["methods"]:
        sec = row["seconds"]
        label = names[row["method"]]
        if row["method"] == "dsa":
            label += f" ({row['outer_steps']} outer x {row['inner_loop']} inner)"
        lines.append(f"| {label} | {s(sec['reference'])} | {s(sec['ddz'])} | {x(row['ratio'])} | "
                     f"{s(sec.get('ddz-bf16'))} | {x(row.get('ratio_bf16'))} | {row['loss_rel_diff']:.1e} | "
                     f"{row['sync']} |")
    for row in result["mtt"]["rows"]:
        sec, check = row["seconds"], row["loss_rel_diff"]
        lines.append(f"| MTT iteration, syn_steps {row['syn_steps']}, unrolled | {s(sec['reference'])} | "
                     f"{s(sec['unrolled'])} | {x(row['ratio'])} | | | {check['unrolled']:.1e} | "
                     f"{row.get('sync_unrolled', '')} |")
        lines.append(f"| MTT iteration, syn_steps {row['syn_steps']}, constant memory | "
                     f"{s(sec['reference'])} | "
                     f"{s(sec['constant'])} | {x(row['ratio_constant'])} | | | {check['constant']:.1e} | "
                     f"{row.get('sync_constant', '')} |")
    lines += [
        "",
        "| evaluation epoch, N models | reference-style | ddz sequential | ddz batched | ratio | "
        "batched --cuda-graph | ratio | batched --amp bf16 | ratio | loss check | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["eval"]:
        ref = row["reference_s_per_epoch"]
        check = row["check"]
        lines.append(
            f"| {row['models']} | {s(ref)} | {s(row['sequential_s_per_epoch'])} | "
            f"{s(row['batched_s_per_epoch'])} | "
            f"{x(ref / row['batched_s_per_epoch'])} | {s(row['graphed_s_per_epoch'])} | "
            f"{x(ref / row['graphed_s_per_epoch'])} | {s(row['bf16_s_per_epoch'])} | "
            f"{x(ref / row['bf16_s_per_epoch'])} | {check['loss_rel_diff']:.1e} | {row['peak_mb']:.0f} |")
    zoo = result["zoo"]
    step_checks = [f"N={c['models']} {c['weights_rel_diff']:.1e} / {c['graphed_weights_rel_diff']:.1e}"
                   for c in (row["check"] for row in result["eval"])]
    lines += [
        "",
        f"Zoo training epoch ({zoo['seeds']} seeds x {zoo['images']} images, batch 256): reference-style "
        f"{s(zoo['reference_s'])}, ddz one by one {s(zoo['sequential_s'])}, batched {s(zoo['batched_s'])} "
        f"({x(zoo['batched_vs_reference'])} the reference-style loop).",
        f"Evaluation step checks (weights after one step vs each net alone; --cuda-graph vs eager after "
        f"three steps): {', '.join(step_checks)}. Evaluation epoch under sync debug: {result['eval_sync']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a CPU-sized whole bench")
    parser.add_argument("--out", default="bench-out", help="folder for gpu.json and gpu.md")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads or args.quick:  # one thread: a --quick run shares a small machine
        torch.set_num_threads(args.threads or 1)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    quick = args.quick
    set_shapes(QUICK if quick else FULL)
    started = time.perf_counter()
    settings = Namespace(
        device=str(device), reps=1 if quick else 3, compile=False, amp=True, strict=False,
        outer_steps=None, inner_loop=1 if quick else None, syn_steps=[3 if quick else 20],
        models=[1, 2] if quick else [1, 5, 25, 100], epochs=1 if quick else 10, warmup=1 if quick else 3,
    )
    result: dict = {
        "device": str(device), "device_name": name, "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "threads": torch.get_num_threads(), "quick": quick, "tf32": False,
        "shapes": {**(QUICK if quick else FULL), "arch": "convnet3"},
    }
    with float32_math():
        data = ds.random_dataset(str(device))
        dsa_settings = Namespace(**{**vars(settings), "outer_steps": 2 if quick else None})
        result["methods"] = [
            ds.bench_method("dm", data, settings),
            ds.bench_method("dsa", data, dsa_settings),
            ds.bench_method("dc", data, Namespace(**{**vars(settings), "outer_steps": 1})),
        ]
        result["mtt"] = ds.bench_mtt(data, settings)
        result["eval"] = eval_rows(settings, device)
        result["eval_sync"] = eval_sync(device, 5) if device.type == "cuda" else "not checked (no CUDA)"
        result["zoo"] = es.measure_zoo(2 if quick else 10, 32 if quick else 50000, settings.reps, device,
                                       reference=True)
    checks = [row["loss_rel_diff"] for row in result["methods"]]
    checks += [v for row in result["mtt"]["rows"] for v in row["loss_rel_diff"].values()]
    checks += [row["check"][k] for row in result["eval"]
               for k in ("loss_rel_diff", "weights_rel_diff", "graphed_weights_rel_diff")]
    result["checks_passed"] = all(c <= TOLERANCE for c in checks)
    result["seconds_total"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    atomic_write_json(out / "gpu.json", result)
    table = markdown(result)
    atomic_write_text(out / "gpu.md", table)
    print(table)
    return 0 if result["checks_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
