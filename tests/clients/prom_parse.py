#!/usr/bin/env python3
"""Parses Prometheus/OpenMetrics text from stdin with prometheus_client's own parser (the
reference implementation's) and prints {"name{label=...}": value} as JSON; exits 1 if the text
does not parse.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    out = {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
