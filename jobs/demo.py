"""Ray job entrypoint for `specray demo`: the whole pipeline on the synthetic survey.

Takes exactly the arguments of `specray demo` (see `specray demo --help`); all logic
lives in specray.cli. Submit from the repository root (docs/cluster.md):

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/demo.py --out s3://BUCKET/demo --stars 300
"""

import sys

from specray.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
