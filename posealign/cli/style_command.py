"""``posealign style train``: train the AdaIN decoder used by the image level with the VGG encoder."""

from __future__ import annotations

import argparse

from posealign.style_training_config import StyleTrainingConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser("style", help="image-level style transfer (AdaIN decoder training)")
    actions = parser.add_subparsers(dest="style_command", required=True)
    train = actions.add_parser("train", help="train the AdaIN decoder on source and target images")
    defaults = StyleTrainingConfig(source="", target="", out="")
    train.add_argument("--source", required=True, help="directory (recursive) or glob of source-domain images")
    train.add_argument("--target", required=True, help="directory (recursive) or glob of target-domain images")
    train.add_argument("--out", required=True, help="output directory (decoder.pt, decoder_last.pt, stylizations.png)")
    train.add_argument(
        "--encoder-weights",
        default=None,
        help="VGG-19 weights: torchvision layout or the AdaIN release's vgg_normalised.pth, or 'imagenet' "
        "(downloads); default: random (smoke tests only)",
    )
    train.add_argument("--steps", type=int, default=defaults.steps, help="total steps (default: %(default)s)")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size, help="default: %(default)s")
    train.add_argument("--image-size", type=int, default=defaults.image_size, help="square crop side, multiple of 8")
    train.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default: %(default)s)")
    train.add_argument("--content-weight", type=float, default=defaults.content_weight)
    train.add_argument("--style-weight", type=float, default=defaults.style_weight)
    train.add_argument(
        "--one-direction",
        action="store_true",
        help="always source as content and target as style (default: swap roles at random, as the release)",
    )
    train.add_argument("--save-every", type=int, default=defaults.save_every, help="checkpoint interval in steps")
    train.add_argument("--workers", type=int, default=defaults.workers, help="image-reading threads")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--device", default=defaults.device, help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    train.add_argument("--resume", action="store_true", help="continue from OUT/decoder_last.pt")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from posealign.style_training import train_decoder

    config = StyleTrainingConfig(
        source=args.source,
        target=args.target,
        out=args.out,
        encoder_weights=args.encoder_weights,
        steps=args.steps,
        batch_size=args.batch_size,
        image_size=args.image_size,
        lr=args.lr,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        bidirectional=not args.one_direction,
        save_every=args.save_every,
        workers=args.workers,
        seed=args.seed,
        device=args.device,
        resume=args.resume,
    )
    path = train_decoder(config)
    print(f"decoder: {path}")
    return 0
