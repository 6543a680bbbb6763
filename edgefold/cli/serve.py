"""``edgefold serve-check REPO``: a Triton model repository parsed through Triton's schema and checked against
each model's edgefold sidecar, offline (no server needed)."""
from __future__ import annotations

import argparse

from edgefold.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("serve-check", help="check a Triton model repository against the engines' sidecars",
                       description="Parses REPO/*/config.pbtxt with Triton's protobuf schema and checks names, data "
                       "types, dims and max_batch_size against REPO/NAME/edgefold.json (written by edgefold build "
                       "--triton REPO). Exit 1 on a mismatch, 2 on a file that cannot be read.")
    p.add_argument("repository", help="the model repository folder (tritonserver --model-repository)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgefold.deploy.triton import check_repository

    for m in check_repository(args.repository):
        plan = "" if m.model_file else "  (no model file in 1/ yet: copy the engine built on the device)"
        print(f"{m.name}: {m.platform}, input {m.inputs}, max_batch_size {m.max_batch_size}: ok{plan}")
    return EXIT_OK
