"""Ray job entrypoint for `specray synth`: generate the synthetic survey (ground truth).

Takes exactly the arguments of `specray synth` (see `specray synth --help`); all logic
lives in specray.cli. Submit from the repository root (docs/cluster.md):

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/synth.py --out s3://BUCKET/raw --stars 300 --format fits
"""

import sys

from specray.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
