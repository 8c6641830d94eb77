"""Ray job entrypoint for `specray analyze`: which latent nodes are physics (MI, significance).

Takes exactly the arguments of `specray analyze` (see `specray analyze --help`); all logic
lives in specray.cli. Submit from the repository root (docs/cluster.md):

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/analyze.py --data s3://BUCKET/store --model s3://BUCKET/runs/paper \
            --out s3://BUCKET/analysis/paper
"""

import sys

from specray.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]]))
