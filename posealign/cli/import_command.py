"""``posealign import CKPT --from daml|udape|regda --task T --out FILE.safetensors [--which student|teacher|model]``

Turns a checkpoint written by the released code of DAML (sunshinglight/DAML_PoseEstimation),
UDAPE (VisionLearningGroup/UDA_PoseEstimation) or RegDA (the Transfer-Learning-Library) into a
posealign model file: the same heatmaps on the same image. ``eval``, ``predict``, ``export`` and
training (``--init FILE``, ``train.init=FILE``) take it.

--which picks the weights: DAML and UDAPE save ``student`` and ``teacher`` (default: teacher, the
one their papers report), RegDA saves ``model``. --task names the task the checkpoint was trained
for (its keypoint set, image size and labeled splits, e.g. surreal2lsp); the architecture (ResNet
depth, deconvolutions, head) is read from the weights. A network posealign cannot build, or a
keypoint count that is not the task's, is refused with what differs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from posealign.cli import add_command_parser
from posealign.config import available_tasks
from posealign.errors import UserError


def register(subparsers) -> None:
    parser = add_command_parser(
        subparsers, "import", "turn a DAML, UDAPE or RegDA release checkpoint into a posealign model file", __doc__
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint of the released code (.pth / .pt)")
    parser.add_argument("--from", dest="source", required=True, choices=("daml", "udape", "regda"), help="its code")
    parser.add_argument("--task", required=True, help=f"the task it was trained for; one of {available_tasks()}")
    parser.add_argument("--out", required=True, help="FILE.safetensors to write")
    parser.add_argument(
        "--which", default=None, help="student | teacher | model (default: teacher for daml/udape, model for regda)"
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="network input side (default: the task's, 256 for the paper's)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from posealign.checkpoint_import import import_released_checkpoint
    from posealign.pose_model_files import write_exported_model

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"{out}: the model file's name must end with .safetensors; pass --out MODEL.safetensors")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; pass --out FOLDER/MODEL.safetensors")
    model = import_released_checkpoint(args.checkpoint, args.source, args.task, args.which, args.image_size)
    write_exported_model(model, out)
    config = model.model_config
    print(
        f"imported {args.checkpoint} ({args.source}, {model.origin['weights']} weights: {config['backbone']}, "
        f"{config['deconv_layers']} deconvolutions of {config['deconv_channels']}, {model.keypoint_set.num_keypoints} "
        f"keypoints {model.keypoint_set.name!r}) -> {out}"
    )
    return 0
