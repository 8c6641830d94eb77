"""Ray job entrypoint for `specray train`: train the beta-VAE on a store (Ray Train).

Takes exactly the arguments of `specray train` (see `specray train --help`); all logic
lives in specray.cli. Submit from the repository root (docs/cluster.md):

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/train.py --data s3://BUCKET/store --out s3://BUCKET/runs/paper \
            --set train.use_gpu=true --set train.workers=4
"""

import sys

from specray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
