"""Ray job entrypoint for `specray ingest`: FITS files -> Parquet shards (Ray Data).

Takes exactly the arguments of `specray ingest` (see `specray ingest --help`); all logic
lives in specray.cli. Submit from the repository root (docs/cluster.md):

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/ingest.py s3://BUCKET/harps/ --out s3://BUCKET/store --grid harps \
            --labels s3://BUCKET/harps/labels.csv
"""

import sys

from specray.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
