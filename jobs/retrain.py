"""Ray job entrypoint for `specray retrain`: new raw files -> store -> resumed run -> analysis.

Takes exactly the arguments of `specray retrain` (see `specray retrain --help`); all logic
lives in specray.cli. Submit from the repository root (docs/cluster.md):

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/retrain.py --raw s3://BUCKET/raw --store s3://BUCKET/store \
            --run s3://BUCKET/runs/paper --analysis s3://BUCKET/analysis/paper \
            --grid harps --set train.use_gpu=true --set train.workers=4
"""

import sys

from specray.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]]))
