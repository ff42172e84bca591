"""The digits table of docs/distill.md, produced with the real command line.

Trains the PTMs with `ddz zoo train` (ConvNet-3, digits, seeds 0..N-1, snapshots at epoch 1 and
the last), then runs `ddz eval --random-real` and `ddz distill` for random-real, DM, DM+CLoM
(each snapshot), DSA and DSA+CLoM (each snapshot) at IPC 10, every row evaluated by the same
protocol settings, and prints a markdown table (mean +- std over the evaluation models).

    .venv/bin/python bench/digits_table.py --out runs/digits-table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def ddz(args: list[str], env: dict[str, str]) -> None:
    command = [str(Path(sys.executable).with_name("ddz")), *args]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/digits-table"))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ptm-seeds", type=int, default=2)
    parser.add_argument("--ptm-epochs", type=int, default=150)
    parser.add_argument("--dm-iterations", type=int, default=300)
    parser.add_argument("--dsa-iterations", type=int, default=30)
    parser.add_argument("--width", type=int, default=32, help="width of the distillation ConvNet-3")
    parser.add_argument("--eval-models", type=int, default=5)
    parser.add_argument("--eval-epochs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every command")
    args = parser.parse_args()

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DDZ_HOME": str(out / "home")}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    last = args.ptm_epochs
    if not (out / "ptms.json").exists():
        ddz(["--seed", str(args.seed), "zoo", "train", "--dataset", "digits", "--arch", "convnet3",
             "--seeds", str(args.ptm_seeds), "--epochs", str(last), "--snapshots", f"1,{last}",
             "--launcher", "inline", "--json", str(out / "ptms.json")], env)

    common = ["--dataset", "digits", "--ipc", str(args.ipc), "--net-option", f"width={args.width}",
              "--eval-models", str(args.eval_models), "--eval-epochs", str(args.eval_epochs)]
    rows: list[tuple[str, list[str]]] = [("random-real", [])]
    for method, iterations in (("dm", args.dm_iterations), ("dsa", args.dsa_iterations)):
        base = ["distill", "--method", method, "--iterations", str(iterations), *common]
        rows.append((method.upper(), base))
        for epoch in (1, last):
            rows.append((f"{method.upper()}+CLoM @epoch{epoch}",
                         [*base, "--ptm", f"digits/convnet3/*@epoch{epoch}", "--guidance", "clom"]))
    results = []
    for label, command in rows:
        report = out / f"{label.replace(' ', '_').replace('@', '').replace('+', '_')}.json"
        if not report.exists():
            if label == "random-real":
                ddz(["--seed", str(args.seed), "eval", "--random-real", "--dataset", "digits",
                     "--ipc", str(args.ipc), "--models", str(args.eval_models), "--epochs",
                     str(args.eval_epochs), "--json", str(report)], env)
            else:
                ddz(["--seed", str(args.seed), *command, "--out", str(out / "runs" / report.stem),
                     "--json", str(report)], env)
        data = json.loads(report.read_text())
        result = data["eval"]["convnet3"]
        results.append((label, result, data))
    print(f"digits, IPC {args.ipc}, seed {args.seed}; evaluation: ConvNet-3 (width 128), "
          f"{args.eval_models} models x {args.eval_epochs} epochs, DSA, lr 0.01 (x0.1 at half)")
    print("| run | accuracy (%) | iterations | alpha | distill s |")
    print("|---|---|---|---|---|")
    for label, result, data in results:
        print(f"| {label} | {100 * result['mean']:.2f} ± {100 * result['std']:.2f} | "
              f"{data.get('iterations') or '-'} | {data.get('alpha') or '-'} | "
              f"{data.get('seconds_distill') or 0:.0f} |")


if __name__ == "__main__":
    main()
