#!/usr/bin/env python3
"""Decrypts an NDJSON archive of platform callbacks with PySpark, one engine per executor
process, reused by every partition that process runs.

    spark_decrypt_archive.py INPUT OUTPUT [--master local[2]] [--keep-going]

INPUT is a text file (or directory, or glob) of callbacks, one JSON document per line;
OUTPUT a directory of part files, one decrypted callback per line. Key settings come from the
environment, as for the CLI: the AWS chain for KMS (AWS_REGION, AWS_ENDPOINT_URL_KMS, a role)
and ONESEAL_LOCAL_KEY for local-key blobs. KMS cost: one Decrypt per distinct data key per
executor process (the platform makes one data key per message or per batch), however many
partitions the process runs.
"""

import argparse
import os

_ENGINE = None


def engine(keep_going):
    """This process's engine: made at its first partition, reused by the next ones."""
    global _ENGINE
    if _ENGINE is None:
        import oneseal

        _ENGINE = oneseal.Engine(local_key=os.environ.get("ONESEAL_LOCAL_KEY"))
    return _ENGINE


def decrypt_partition(lines, keep_going=False):
    eng = engine(keep_going)
    for line in lines:
        if line.strip():
            # One callback per output line: the serializer's own line end dropped.
            yield eng.decrypt(line, keep_going=keep_going).rstrip("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--master", help="e.g. local[2]; default: what spark-submit says")
    ap.add_argument("--keep-going", action="store_true", help="leave undecryptable items as they are")
    a = ap.parse_args()

    from pyspark.sql import SparkSession

    b = SparkSession.builder.appName("oneseal-decrypt-archive")
    if a.master:
        b = b.master(a.master)
    spark = b.getOrCreate()
    try:
        keep = a.keep_going
        (
            spark.sparkContext.textFile(a.input)
            .mapPartitions(lambda lines: decrypt_partition(lines, keep))
            .saveAsTextFile(a.output)
        )
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
