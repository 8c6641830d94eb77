"""Ray job entrypoint for `specray tune`: search latent size and beta (Ray Tune).

Takes exactly the arguments of `specray tune` (see `specray tune --help`); all logic
lives in specray.cli. Submit from the repository root (docs/cluster.md):

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/tune.py --data s3://BUCKET/store --out s3://BUCKET/tune/search1 --samples 16 \
            --set train.use_gpu=true --set tune.max_concurrent=4
"""

import sys

from specray.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
