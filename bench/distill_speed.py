"""Time one iteration of ddz's DM, DSA and MTT against a plain loop written the way the reference
code does it (DatasetCondensation for DM/DSA, mtt-distillation for MTT), on the same shapes, in the
same process.

Shapes: ConvNet-3 width 128, 32x32x3 images, 10 classes, IPC 10, batch_real 256, random data in
memory (300 images per class). Before timing, each method's loss is computed both ways on the
same inputs (same real images, same net, same DSA parameters) and must agree to 1e-5 relative.

    .venv/bin/python bench/distill_speed.py                  # DM and DSA, full iterations
    .venv/bin/python bench/distill_speed.py --outer-steps 2  # DSA: first 2 outer steps only
    .venv/bin/python bench/distill_speed.py --compile --json speed.json

A DSA iteration at IPC 10 is 10 outer steps with 50 inner training epochs between them, so a
full DSA timing takes minutes on a CPU. Ratios are reference time / ddz time (> 1: ddz faster).

MTT (`--method mtt`): ConvNet-3 experts with random weights written to a temporary zoo (3 seeds,
epochs 0..4); the reference-style loop holds the trajectories in memory as the reference's
buffer does, ddz reads the two snapshots an iteration needs from their files (sha256-checked).
`--syn-steps 10 30` also times ddz's --memory constant at each step count and, on a GPU, reports
the peak memory of unrolled and constant.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ddz.data.augment import DSAConfig, DSAParams
from ddz.data.base import ImageDataset
from ddz.distill.methods import DistillConfig, IterationRNG, MTTConfig, build_method
from ddz.distill.methods.base import new_state
from ddz.distill.methods.dc import matching_loss
from ddz.distill.methods.dm import dm_loss
from ddz.nets import build_net

K, IPC, SIZE, CHANNELS, PER_CLASS, BATCH_REAL, WIDTH = 10, 10, 32, 3, 300, 256, 128


def random_dataset(device: str) -> ImageDataset:
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(K * PER_CLASS, CHANNELS, SIZE, SIZE, generator=gen)
    labels = torch.arange(K).repeat_interleave(PER_CLASS)
    test = torch.randn(2 * K, CHANNELS, SIZE, SIZE, generator=gen)
    return ImageDataset(
        "random", train.to(device), labels.to(device), test.to(device), torch.arange(K).repeat(2).to(device),
        [str(c) for c in range(K)], (0.0,) * CHANNELS, (1.0,) * CHANNELS,
    )


def one_group(params: DSAParams, c: int) -> DSAParams:
    return DSAParams(params.tokens[c : c + 1], params.uniforms[c : c + 1])


# --- the reference-style loops -------------------------------------------------------------------


class ReferenceStyle:
    """Per class: host-side index permutation, its own DSA call, its own forward(s)."""

    def __init__(self, data: ImageDataset, seed: int):
        self.data = data
        self.rng = np.random.default_rng(seed)
        self.indices_class = [idx.cpu().numpy() for idx in data.class_indices()]

    def get_images(self, c: int, n: int) -> torch.Tensor:
        idx_shuffle = self.rng.permutation(self.indices_class[c])[:n]
        return self.data.train_images[torch.from_numpy(idx_shuffle).to(self.data.device)]

    def dm_iteration(self, state, rng: IterationRNG, dsa_config: DSAConfig) -> torch.Tensor:
        net = build_net("convnet3", CHANNELS, K, SIZE, generator_seed=rng.net_seed(), width=WIDTH)
        net = net.to(self.data.device)
        net.train()
        for p in net.parameters():
            p.requires_grad = False
        dsa = rng.dsa(dsa_config)
        loss = torch.tensor(0.0, device=self.data.device)
        for c in range(K):
            img_real = self.get_images(c, BATCH_REAL)
            img_syn = state.images[c * IPC : (c + 1) * IPC]
            params = dsa.siamese(1)
            img_real = dsa(img_real[None], params)[0]
            img_syn = dsa(img_syn[None], params)[0]
            output_real = net.embed(img_real).detach()
            output_syn = net.embed(img_syn)
            loss += torch.sum((output_real.mean(0) - output_syn.mean(0)) ** 2)
        state.optimizer.zero_grad()
        loss.backward()
        state.optimizer.step()
        return loss.detach()

    def dsa_iteration(self, state, rng: IterationRNG, config: DistillConfig, outer_steps: int,
                      augment: bool = True):
        """DSA's iteration (DC's with augment False: no siamese augmentation, plain inner epochs)."""
        net = build_net("convnet3", CHANNELS, K, SIZE, generator_seed=rng.net_seed(), width=WIDTH)
        net = net.to(self.data.device)
        net.train()
        net_parameters = list(net.parameters())
        optimizer_net = torch.optim.SGD(net.parameters(), lr=config.lr_net)
        dsa = rng.dsa(config.dsa)
        loss_avg = 0.0
        for ol in range(outer_steps):
            loss = torch.tensor(0.0, device=self.data.device)
            for c in range(K):
                img_real = self.get_images(c, BATCH_REAL)
                lab_real = torch.ones((img_real.shape[0],), device=img_real.device, dtype=torch.long) * c
                img_syn = state.images[c * IPC : (c + 1) * IPC]
                lab_syn = torch.ones((IPC,), device=img_real.device, dtype=torch.long) * c
                if augment:
                    params = dsa.siamese(1)
                    img_real = dsa(img_real[None], params)[0]
                    img_syn = dsa(img_syn[None], params)[0]
                gw_real = torch.autograd.grad(F.cross_entropy(net(img_real), lab_real), net_parameters)
                gw_real = [g.detach().clone() for g in gw_real]
                gw_syn = torch.autograd.grad(
                    F.cross_entropy(net(img_syn), lab_syn), net_parameters, create_graph=True
                )
                loss += reference_match_loss(gw_syn, gw_real)
            state.optimizer.zero_grad()
            loss.backward()
            state.optimizer.step()
            loss_avg += loss.item()
            if ol == outer_steps - 1:
                break
            image_syn_train = state.images.detach().clone()
            label_syn_train = state.labels.detach().clone()
            loader = DataLoader(
                TensorDataset(image_syn_train, label_syn_train), batch_size=config.batch_train,
                shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(ol),
            )
            for _ in range(config.inner_loop):
                reference_epoch(loader, net, optimizer_net, dsa if augment else None)
        return torch.tensor(loss_avg)


def reference_distance_wb(gwr: torch.Tensor, gws: torch.Tensor) -> torch.Tensor:
    shape = gwr.shape
    if len(shape) == 4:
        gwr = gwr.reshape(shape[0], shape[1] * shape[2] * shape[3])
        gws = gws.reshape(shape[0], shape[1] * shape[2] * shape[3])
    elif len(shape) == 3:
        gwr = gwr.reshape(shape[0], shape[1] * shape[2])
        gws = gws.reshape(shape[0], shape[1] * shape[2])
    elif len(shape) == 1:
        return torch.tensor(0, dtype=torch.float, device=gwr.device)
    cos = torch.sum(gwr * gws, dim=-1) / (torch.norm(gwr, dim=-1) * torch.norm(gws, dim=-1) + 1e-6)
    return torch.sum(1 - cos)


def reference_match_loss(gw_syn, gw_real) -> torch.Tensor:
    dis = torch.tensor(0.0, device=gw_real[0].device)
    for ig in range(len(gw_real)):
        dis += reference_distance_wb(gw_real[ig], gw_syn[ig])
    return dis


def reference_epoch(loader, net, optimizer, dsa) -> None:
    net.train()
    loss_avg, acc_avg, num_exp = 0.0, 0, 0
    for img, lab in loader:
        if dsa is not None:
            img = dsa(img, dsa.per_sample(len(img)))
        output = net(img)
        loss = F.cross_entropy(output, lab)
        acc_avg += np.sum(np.equal(np.argmax(output.cpu().data.numpy(), axis=-1), lab.cpu().data.numpy()))
        loss_avg += loss.item() * len(lab)
        num_exp += len(lab)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


# --- equality checks on identical inputs ----------------------------------------------------------


def check_dm_loss(data: ImageDataset, config: DistillConfig) -> float:
    rng = IterationRNG(7, 0, data.device)
    net = build_net("convnet3", CHANNELS, K, SIZE, generator_seed=rng.net_seed(), width=WIDTH).to(data.device)
    net.train()
    for p in net.parameters():
        p.requires_grad_(False)
    real = data.sample_all_classes(BATCH_REAL, rng.generator("real"))
    syn = real[:, :IPC].clone() + 0.1
    dsa = rng.dsa(config.dsa)
    params = dsa.siamese(K)
    ours = float(dm_loss(net.embed, real, syn, dsa, params))
    ref = 0.0
    for c in range(K):
        p = one_group(params, c)
        r = net.embed(dsa(real[c : c + 1], p)[0]).mean(0)
        s = net.embed(dsa(syn[c : c + 1], p)[0]).mean(0)
        ref += float(((r - s) ** 2).sum())
    return abs(ours - ref) / abs(ref)


def check_matching_loss(data: ImageDataset, config: DistillConfig, augment: bool = True) -> float:
    """DSA's matching loss both ways (DC's with augment False)."""
    rng = IterationRNG(7, 0, data.device)
    net = build_net("convnet3", CHANNELS, K, SIZE, generator_seed=rng.net_seed(), width=WIDTH).to(data.device)
    real = data.sample_all_classes(BATCH_REAL, rng.generator("real"))
    syn = (real[:, :IPC].clone() + 0.1).requires_grad_(True)
    dsa = rng.dsa(config.dsa)
    params = dsa.siamese(K)
    aug = (lambda x, p: dsa(x, p)) if augment else (lambda x, p: x)
    ours = float(matching_loss(net, aug(real, params), aug(syn, params), "ours").detach())
    ref = 0.0
    params_all = list(net.parameters())
    for c in range(K):
        p = one_group(params, c)
        r, s = aug(real[c : c + 1], p)[0], aug(syn[c : c + 1], p)[0]
        label = torch.full((BATCH_REAL,), c, device=data.device)
        gw_real = [g.detach() for g in torch.autograd.grad(F.cross_entropy(net(r), label), params_all)]
        gw_syn = torch.autograd.grad(F.cross_entropy(net(s), label[:IPC]), params_all, create_graph=True)
        ref += float(reference_match_loss(gw_syn, gw_real).detach())
    return abs(ours - ref) / abs(ref)


# --- timing ---------------------------------------------------------------------------------------


# --- MTT -----------------------------------------------------------------------------------------


def mtt_experts(folder, device: str):
    """A temporary zoo of three 5-epoch ConvNet-3 trajectories (random weights) and its buffer."""
    from pathlib import Path

    from ddz.distill.experts import ExpertBuffer
    from ddz.zoo.api import Zoo
    from ddz.zoo.paths import ZooPaths
    from ddz.zoo.records import SnapshotMeta, SnapshotName

    zoo = Zoo(ZooPaths.under(Path(folder)))
    trajectories = []
    for seed in range(3):
        net = build_net("convnet3", CHANNELS, K, SIZE, generator_seed=seed, width=WIDTH)
        epochs = []
        for epoch in range(5):
            with torch.no_grad():
                for p in net.parameters():
                    noise = torch.Generator().manual_seed(seed * 10 + epoch)
                    p.add_(0.01 * torch.randn(p.shape, generator=noise))
            meta = SnapshotMeta(SnapshotName("random", "convnet3", seed, epoch), "random", dict(net.config),
                                tuple(str(c) for c in range(K)), (0.0,) * CHANNELS, (1.0,) * CHANNELS, {},
                                {"name": "bench"}, "bench", "bench", "bench", "bench")
            zoo.local.save(meta, net.state_dict())
            epochs.append(torch.cat([p.detach().reshape(-1) for p in net.parameters()]).to(device))
        trajectories.append(epochs)
    rows = zoo.resolve("random/convnet3/*")
    return ExpertBuffer(rows, zoo.files(rows)), trajectories


class ReferenceMTT:
    """The reference distill.py's iteration: trajectories in memory, a flat-parameter student,
    syn_steps unrolled steps with create_graph, one backward, two SGD steps."""

    def __init__(self, config: DistillConfig, trajectories, data: ImageDataset, images: torch.Tensor):
        from ddz.distill.methods.mtt import Student

        self.config, self.trajectories = config, trajectories
        net = build_net("convnet3", CHANNELS, K, SIZE, generator_seed=0, width=WIDTH)
        self.student = Student(net.to(data.device))
        self.draws = random.Random(0)  # the reference draws with Python's random and numpy
        self.images = images.detach().clone().requires_grad_(True)
        self.labels = torch.arange(K, device=data.device).repeat_interleave(IPC)
        self.lr = torch.tensor(config.mtt.lr_teacher, device=data.device, requires_grad=True)
        self.opt_img = torch.optim.SGD([self.images], lr=config.lr_img, momentum=0.5)
        self.opt_lr = torch.optim.SGD([self.lr], lr=config.mtt.lr_lr, momentum=0.5)

    def iteration(self, rng: IterationRNG) -> torch.Tensor:
        config = self.config
        trajectory = self.trajectories[self.draws.randrange(len(self.trajectories))]
        start_epoch = self.draws.randrange(config.mtt.max_start_epoch)
        start = trajectory[start_epoch]
        target = trajectory[start_epoch + config.mtt.expert_epochs]
        dsa = rng.dsa(config.dsa)
        chunks, batches = [], []
        for _ in range(config.mtt.syn_steps):
            if not chunks:
                order = torch.randperm(len(self.images))
                chunks = list(torch.split(order, config.mtt.batch_syn or len(self.images)))
            idx = chunks.pop()
            batches.append((idx, dsa.per_sample(len(idx))))
        total = self.unrolled(start, target, batches, dsa)
        self.opt_img.zero_grad()
        self.opt_lr.zero_grad()
        total.backward()
        self.opt_img.step()
        self.opt_lr.step()
        return total.detach()


    def unrolled(self, start: torch.Tensor, target: torch.Tensor, batches, dsa) -> torch.Tensor:
        """The student's steps on (indices, DSA draw) batches, the graph kept; the normalised
        parameter distance."""
        flat = start.clone().requires_grad_(True)
        for idx, params in batches:
            x = dsa(self.images[idx], params)
            loss = F.cross_entropy(self.student(flat, x), self.labels[idx])
            (grad,) = torch.autograd.grad(loss, flat, create_graph=True)
            flat = flat - self.lr * grad
        num = F.mse_loss(flat, target, reduction="sum")
        den = F.mse_loss(start, target, reduction="sum")
        return num / den


def check_mtt_loss(config: DistillConfig, trajectories, data: ImageDataset, images: torch.Tensor) -> dict:
    """MTT's loss on the same start, target, batches and DSA draws: the reference-style unrolled
    loop against ddz's unrolled and constant-memory computations (relative differences)."""
    from ddz.distill.methods.mtt import constant_memory_gradients, plan_steps, unrolled_loss

    reference = ReferenceMTT(config, trajectories, data, images)
    rng = IterationRNG(7, 0, data.device)
    dsa = rng.dsa(config.dsa)
    plans = plan_steps(len(images), config.mtt.syn_steps, config.mtt.batch_syn or len(images),
                       torch.Generator().manual_seed(0), dsa, data.device)
    start, target = trajectories[0][0], trajectories[0][config.mtt.expert_epochs]
    ref = float(reference.unrolled(start, target, [(p.indices, p.dsa) for p in plans], dsa).detach())
    lr = reference.lr.detach()
    unrolled = float(unrolled_loss(reference.student, start, target, reference.images, reference.labels, lr,
                                   plans, dsa).detach())
    constant = float(constant_memory_gradients(reference.student, start, target, reference.images,
                                               reference.labels, lr, plans, dsa)[0])
    return {"unrolled": abs(unrolled - ref) / abs(ref), "constant": abs(constant - ref) / abs(ref)}


def peak_memory(fn: Callable[[], object], device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())


def bench_mtt(data: ImageDataset, args) -> dict:
    import tempfile
    from dataclasses import replace

    from ddz.distill.methods.mtt import TrajectoryMatching

    with tempfile.TemporaryDirectory() as folder:
        buffer, trajectories = mtt_experts(folder, args.device)
        mtt = MTTConfig(syn_steps=args.syn_steps[0], expert_epochs=2, max_start_epoch=3, lr_lr=1e-5,
                        lr_teacher=0.01)
        base = DistillConfig(method="mtt", ipc=IPC, lr_img=1000.0, mtt=mtt).resolved()
        draw = torch.Generator(device=data.device).manual_seed(1)
        start_images = data.sample_all_classes(IPC, draw).flatten(0, 1)
        rows = []
        for steps in args.syn_steps:
            config = replace(base, mtt=replace(base.mtt, syn_steps=steps))
            check = check_mtt_loss(config, trajectories, data, start_images)
            if max(check.values()) > 1e-5 and getattr(args, "strict", True):
                raise SystemExit(f"mtt: ddz and the reference-style loop disagree (relative {check})")
            variants: dict[str, Callable[[int], object]] = {}
            reference = ReferenceMTT(config, trajectories, data, start_images)
            variants["reference"] = lambda it, r=reference: r.iteration(IterationRNG(0, it, data.device))
            for memory in ("unrolled", "constant"):
                cfg = replace(config, mtt=replace(config.mtt, memory=memory))
                state = new_state(start_images, IPC, cfg.lr_img, cfg.momentum)
                runner = TrajectoryMatching(cfg, data, None, buffer)
                variants[memory] = (lambda it, s=state, m=runner: m.step(s, IterationRNG(0, it, data.device)))
            _, times = time_variants(variants, args.reps, args.device, f"mtt syn_steps {steps}")
            median = {name: statistics.median(t) for name, t in times.items()}
            memory_bytes = {name: peak_memory(lambda fn=fn: fn(99), args.device)
                            for name, fn in variants.items()}
            syncs = {f"sync_{name}": sync_free(lambda fn=variants[name]: fn(100), args.device)
                     for name in ("unrolled", "constant")}
            rows.append({
                "syn_steps": steps, "loss_rel_diff": check,
                "seconds": {k: round(v, 4) for k, v in median.items()},
                "ratio": round(median["reference"] / median["unrolled"], 3),
                "ratio_constant": round(median["reference"] / median["constant"], 3),
                "peak_bytes": memory_bytes, **syncs,
            })
    return {"method": "mtt", "ipc": IPC, "batch_syn": "all", "rows": rows}


def timed(fn: Callable[[], object], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_variants(variants: dict[str, Callable[[int], object]], reps: int, device: str, label: str
                  ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each variant's iteration 0 (warm-up and compilation: the cold cost, reported apart), then
    `reps` rounds of iterations 1.. with the variants interleaved within a round (so that drift
    of a shared machine hits them alike): (first seconds, all timed seconds) per variant."""
    first = {name: timed(lambda fn=fn: fn(0), device) for name, fn in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(reps):
        for name, fn in variants.items():
            times[name].append(timed(lambda fn=fn, rep=rep: fn(rep + 1), device))
            print(f"  {label} {name:12s} rep {rep}: {times[name][-1]:.3f}s", file=sys.stderr, flush=True)
    return first, times


def sync_free(fn: Callable[[], object], device: str) -> str:
    """On CUDA, run `fn` under torch.cuda.set_sync_debug_mode("error"): "ok", or the first line
    of the error and the deepest ddz frame that synchronised. Elsewhere: "not checked"."""
    import traceback

    if not device.startswith("cuda"):
        return "not checked (no CUDA)"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        torch.cuda.set_sync_debug_mode("default")
        return "ok"
    except RuntimeError as error:
        torch.cuda.set_sync_debug_mode("default")
        frames = [f for f in traceback.extract_tb(error.__traceback__) if "/ddz/" in f.filename]
        where = f" at {frames[-1].filename.split('/ddz/')[-1]}:{frames[-1].lineno}" if frames else ""
        return f"sync{where}: {str(error).splitlines()[0]}"


def bench_method(method: str, data: ImageDataset, args) -> dict:
    """One method's iteration, reference-style loop against ddz (and `args.compile`: compiled;
    `args.amp`, if set: --amp bf16). DC and DSA: `args.outer_steps` outer steps (default all),
    `args.inner_loop` inner epochs (default the IPC table's); DC has no augmentation."""
    from dataclasses import replace

    config = DistillConfig(method=method, ipc=IPC, batch_real=BATCH_REAL, net_options=(("width", WIDTH),))
    config = config.resolved()
    outer = min(args.outer_steps or config.outer_loop or 1, config.outer_loop or 1)
    matching = method in ("dc", "dsa")
    if matching:
        inner = getattr(args, "inner_loop", None) or config.inner_loop
        config = replace(config, outer_loop=outer, inner_loop=inner)
    augment = method != "dc"
    check = check_dm_loss(data, config) if method == "dm" else check_matching_loss(data, config, augment)
    if check > 1e-5 and getattr(args, "strict", True):  # not strict: recorded, the timing goes on
        raise SystemExit(f"{method}: ddz and the reference-style loop disagree (relative {check:.2e})")
    start_images = data.sample_all_classes(IPC, torch.Generator(device=data.device).manual_seed(1))
    start_images = start_images.flatten(0, 1)
    variants: dict[str, Callable[[int], object]] = {}

    def ddz_variant(cfg: DistillConfig) -> Callable[[int], object]:
        state = new_state(start_images, IPC, cfg.lr_img, cfg.momentum)
        runner = build_method(cfg, data)
        return lambda it: runner.step(state, IterationRNG(0, it, data.device))

    ref = ReferenceStyle(data, seed=0)
    ref_state = new_state(start_images, IPC, config.lr_img, config.momentum)
    if method == "dm":
        variants["reference"] = lambda it: ref.dm_iteration(
            ref_state, IterationRNG(0, it, data.device), config.dsa
        )
    else:
        variants["reference"] = lambda it: ref.dsa_iteration(
            ref_state, IterationRNG(0, it, data.device), config, outer, augment
        )
    variants["ddz"] = ddz_variant(config)
    if args.compile:
        variants["ddz-compile"] = ddz_variant(replace(config, compile=True))
    if getattr(args, "amp", False):
        variants["ddz-bf16"] = ddz_variant(replace(config, amp="bf16"))
    first, times = time_variants(variants, args.reps, args.device, method)
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "method": method,
        "outer_steps": outer if matching else None,
        "inner_loop": config.inner_loop if matching else None,
        "loss_rel_diff": check,
        "seconds": {name: round(v, 4) for name, v in median.items()},
        "all_seconds": {name: [round(v, 4) for v in t] for name, t in times.items()},
        "first_iteration_seconds": {name: round(v, 3) for name, v in first.items()},
        "ratio": round(median["reference"] / median["ddz"], 3),
        "sync": sync_free(lambda: variants["ddz"](args.reps + 1), args.device),
    }
    for name in ("compile", "bf16"):
        if f"ddz-{name}" in median:
            result[f"ratio_{name}"] = round(median["reference"] / median[f"ddz-{name}"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", nargs="+", default=["dm", "dsa"], choices=["dm", "dsa", "dc", "mtt"])
    parser.add_argument("--syn-steps", nargs="+", type=int, default=[20], help="MTT: student steps to time")
    parser.add_argument("--reps", type=int, default=3, help="timed iterations per variant (median)")
    parser.add_argument("--outer-steps", type=int, default=None, help="DC/DSA: only this many outer steps")
    parser.add_argument("--inner-loop", type=int, default=None, help="DC/DSA: inner epochs (default: by IPC)")
    parser.add_argument("--amp", action="store_true", help="also time ddz with --amp bf16")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="also time ddz with torch.compile")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--shape", default="3x32", help="CHANNELSxSIZE: 3x32 (CIFAR), 1x28 (MNIST)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global CHANNELS, SIZE
    CHANNELS, SIZE = (int(v) for v in args.shape.split("x"))
    data = random_dataset(args.device)
    results = {
        "shapes": {"classes": K, "ipc": IPC, "image": [CHANNELS, SIZE, SIZE], "batch_real": BATCH_REAL,
                   "arch": "convnet3", "width": WIDTH},
        "device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "methods": [bench_method(m, data, args) for m in args.method if m != "mtt"],
    }
    if "mtt" in args.method:
        results["mtt"] = bench_mtt(data, args)
        for row in results["mtt"]["rows"]:
            s, mem = row["seconds"], row["peak_bytes"]
            line = (f"mtt syn_steps {row['syn_steps']}: reference {s['reference']:.3f}s  "
                    f"ddz {s['unrolled']:.3f}s (ratio {row['ratio']:.2f}x)  "
                    f"constant {s['constant']:.3f}s (ratio {row['ratio_constant']:.2f}x)")
            if mem["unrolled"] is not None:
                line += "  peak MB " + " ".join(f"{k} {v / 2**20:.0f}" for k, v in mem.items())
            print(line)
    for r in results["methods"]:
        line = f"{r['method']}: reference {r['seconds']['reference']:.3f}s  ddz {r['seconds']['ddz']:.3f}s  "
        line += f"ratio {r['ratio']:.2f}x  (loss rel diff {r['loss_rel_diff']:.1e})"
        if "ratio_compile" in r:
            line += f"  compiled {r['seconds']['ddz-compile']:.3f}s ratio {r['ratio_compile']:.2f}x"
            line += f" (first iteration, compiling: {r['first_iteration_seconds']['ddz-compile']:.1f}s)"
        print(line)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
