#!/usr/bin/python3
"""Read Prometheus text exposition (format 0.0.4) on stdin and parse it with
the Prometheus project's own Python parser (prometheus_client.parser,
Debian package python3-prometheus-client).

The metrics tests run it beside their strict in-tree checker
(tests/prom_check.h): the in-tree checker says the text is what we mean to
write, this says a real Prometheus client library reads it.

Exit status:
  0   the text parses, has at least one family, and every family has a
      TYPE the parser understood (counter or gauge, never "unknown");
  1   it does not (the reason is on stderr), or the parser is missing and
      PF_PROM_PARSE_REQUIRED=1 (scripts/test.sh runs);
  77  the parser is missing and not required: the caller skips the check.

Run it with /usr/bin/python3: Debian's module is installed for the system
interpreter, not for a python3 that may come first on PATH.
"""
import os
import sys

SKIP = 77


def main():
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError as e:
        required = os.environ.get("PF_PROM_PARSE_REQUIRED") == "1"
        sys.stderr.write(
            "prom_parse.py: %s cannot import prometheus_client (%s); "
            "install the Debian package python3-prometheus-client\n"
            % (sys.executable, e))
        return 1 if required else SKIP

    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and others
        sys.stderr.write("prom_parse.py: parse error: %s: %s\n"
                         % (type(e).__name__, e))
        return 1
    if not families:
        sys.stderr.write("prom_parse.py: no metric families in the input\n")
        return 1
    untyped = [f.name for f in families if f.type not in ("counter", "gauge")]
    if untyped:
        sys.stderr.write("prom_parse.py: families without a counter or "
                         "gauge TYPE: %s\n" % ", ".join(untyped))
        return 1
    samples = sum(len(f.samples) for f in families)
    print("prom_parse.py: %d families, %d samples" % (len(families), samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
