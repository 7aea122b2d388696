"""How far apart trained networks keep the two domains in the features the discriminator sees:
the proxy A-distance of a linear probe on each crop's per-channel feature means
(:mod:`posealign.metrics.domain_gap`; every run's ``results.json`` has it for its source and target
test splits, at the deconv layer).

    python benchmarks/domain_gap.py RUN/checkpoints/final.pt [RUN2/checkpoints/final.pt ...]

This reads the run's source evaluation split against its target *validation* split, at the deconv and
the backbone layer, and prints the probe's held-out accuracy and cross-entropy (ln 2 = 0.693 is
chance) and the proxy A-distance (0: alike to a linear reader; 2: every crop told apart). No label
is read. It shows whether an alignment level makes the domains' crop statistics alike to a linear
reader, which the training's per-pixel discriminator (near chance throughout) cannot tell.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from posealign.engine.data import build_dataset
from posealign.metrics.domain_gap import domain_gap
from posealign.pose_model_files import load_pose_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoints", type=Path, nargs="+", help="training checkpoints (each run's config names the data)"
    )
    parser.add_argument("--images", type=int, default=400, help="crops per domain")
    parser.add_argument("--target-split", default="target_val", help="the run's target evaluation split to read")
    args = parser.parse_args()
    for checkpoint in args.checkpoints:
        model = load_pose_model(checkpoint)
        config = OmegaConf.create(model.training_config)
        config.data.preload = False  # a few hundred crops are read, not the whole split
        splits = config.data.eval
        for name in ("source", args.target_split):
            if name not in splits:
                raise SystemExit(f"{checkpoint}: no evaluation split {name!r} in its config; it has {sorted(splits)}")
        # The run's own evaluation splits, as `posealign eval` reads them (the tasks name their splits differently).
        source = build_dataset(splits.source, config, "eval.source")
        target = build_dataset(splits[args.target_split], config, f"eval.{args.target_split}")
        print(f"{checkpoint}: eval.source against eval.{args.target_split}, {args.images} crops each")
        for layer in ("deconv", "backbone"):
            gap = domain_gap(model.network, source, target, layer, limit=args.images)
            print(
                f"  {layer:8s} probe accuracy {gap['probe_accuracy']:6.1%}  held-out entropy "
                f"{gap['held_out_entropy']:.3f}  proxy A-distance {gap['proxy_a_distance']:.2f}"
            )


if __name__ == "__main__":
    main()
