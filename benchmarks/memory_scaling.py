#!/usr/bin/env python
"""Peak memory and time per connection from 3 x 1 k hidden neurons to the record.

Usage (from the repository root)::

    python benchmarks/memory_scaling.py                  # 3 x 1 k .. 3 x 1 M, the variants
    python benchmarks/memory_scaling.py --sizes 1000,10000 --variants default

Each row is one ``benchmarks/record.py`` run in its own process (``fit(max_iter=2)``
on the lung-shaped set: initialisation, epoch, SET evolution, epoch, then a
prediction of the training set), its peak resident size taken by the kernel from
outside.  The variants: ``default`` (batch 128, the engine's own choices),
``micro`` (batch 128, an activation budget of 32 samples: micro-batches),
``batch32`` (batch 32) and ``lean`` (no CSC views, ``config.CSC_VIEWS = False``).
Each run's result is kept in ``results/memory_scaling.d/`` (runs with a result are
skipped unless ``--force``: the table can be filled in several sittings); writes
``results/memory_scaling.json`` and ``results/memory_scaling.md``, with the row of
``results/record.json`` when it has a memory plan.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = {
    "default": [],
    "micro": ["--micro", "32"],
    "batch32": ["--batch", "32"],
    "lean": ["--no-csc-views"],
}


def row_of(r, variant):
    plan = r["memory_plan"]
    gib = 2 ** 30
    views = f"{plan['views'] / gib:.3f}"
    if not plan["views"] and not plan["lean"] and r["connections"] <= 20_000_000:
        # kept between calls (_workspace._PREDICT_CACHE_MAX_NNZ), so not in the plan
        views = f"{r['connections'] * 8 / gib:.3f} (cached)"
    cpu = r.get("cpu_ns_per_connection_sample")
    load = r.get("load_average")
    return (f"| 3 x {r['hidden_layer_sizes'][0]:,} | {r['connections']:,} | {r['epsilon']:g} | "
            f"{variant} | {r['batch_size']} / {plan['micro']} | "
            f"{r['weights_state_bytes'] / gib:.3f} | {plan['activations'] / gib:.3f} | "
            f"{views} | {plan['gradients'] / gib:.3f} | "
            f"{(r['peak_rss_bytes'] - r['rss_before_fit_bytes']) / gib:.3f} | "
            f"**{r['peak_over_model']:.2f}** | {min(r['epoch_s']):.2f} | "
            f"{r['ns_per_connection_sample']:.2f} | {'-' if cpu is None else '%.2f' % cpu} | "
            f"{r['evolution_s'][0]:.2f} | {'-' if load is None else '%.1f' % load[0]} |")


HEADER = ("| hidden | connections | epsilon | variant | batch / micro-batch | model GiB | "
          "micro-batch activations GiB | CSC views GiB | gradient buffers GiB | "
          "peak - before GiB | (peak - before) / (model + activations) | best epoch s | "
          "ns per connection and sample | CPU ns (both cores) | SET s | load |\n"
          + "|---" * 16 + "|")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--variants", default="default,micro,batch32,lean")
    ap.add_argument("--variants-from", type=int, default=100000,
                    help="run the variants other than 'default' from this size on")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "memory_scaling"))
    ap.add_argument("--force", action="store_true", help="run again what has a result")
    args = ap.parse_args(argv)
    tmp = args.out + ".d"
    os.makedirs(tmp, exist_ok=True)
    rows = []
    for hidden in map(int, args.sizes.split(",")):
        for variant in args.variants.split(","):
            if variant != "default" and hidden < args.variants_from:
                continue
            out = os.path.join(tmp, f"{hidden}_{variant}.json")
            if os.path.exists(out) and not args.force:
                continue
            cmd = [sys.executable, os.path.join(HERE, "record.py"), "--hidden", str(hidden),
                   "--epsilon", "20", "--out", out] + VARIANTS[variant]
            print(" ".join(cmd), flush=True)
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr[-2000:], flush=True)
                continue
            print(p.stdout.strip().splitlines()[-1], flush=True)
    # every run kept in the folder, in order of size and variant
    for name in os.listdir(tmp):
        hidden, variant = name[:-len(".json")].split("_")
        with open(os.path.join(tmp, name)) as fh:
            rows.append(dict(json.load(fh), variant=variant))
    order = list(VARIANTS)
    rows.sort(key=lambda r: (r["hidden_layer_sizes"][0], order.index(r["variant"])))
    with open(args.out + ".json", "w") as fh:
        json.dump(rows, fh, indent=1)
    lines = [HEADER] + [row_of(r, r["variant"]) for r in rows]
    record = os.path.join(HERE, "results", "record.json")
    if os.path.exists(record):
        with open(record) as fh:
            r = json.load(fh)
        if "memory_plan" in r:
            depth = len(r["hidden_layer_sizes"])
            lines.append(row_of(r, "record").replace("| 3 x ", f"| {depth} x ", 1))
    with open(args.out + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
