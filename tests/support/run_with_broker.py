# SPDX-License-Identifier: MIT
"""Runs a test program with a private RabbitMQ broker for it.

Usage: run_with_broker.py VAR PROGRAM [ARGS...]

Starts one broker with rabbitmq.py (beside this file: free loopback ports,
a temporary directory, stopped and removed at exit), exports its URL as
VAR (e.g. TEST_AMQP_URL) and runs PROGRAM with it; the exit status is
PROGRAM's. One broker serves the whole program, so a suite pays for one
boot. Without rabbitmq-server or python3-pika the program runs without VAR
(the conformance suite then leaves AMQP out and says so); a broker that is
installed but does not start is a failure (exit 1), with its log tail.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    var, argv = sys.argv[1], sys.argv[2:]
    env = dict(os.environ)
    try:
        import pika  # noqa: F401 (rabbitmq.py needs it to see the broker up)
        import rabbitmq
    except ImportError as e:  # no pika for this interpreter
        print("run_with_broker: no broker (%s): %s left unset" % (e, var),
              flush=True)
        return subprocess.call(argv, env=env)
    if not os.access(rabbitmq.SERVER, os.X_OK):
        print("run_with_broker: %s not installed: %s left unset"
              % (rabbitmq.SERVER, var), flush=True)
        return subprocess.call(argv, env=env)
    # The free ports rabbitmq.py picks may be taken by another test before
    # the broker binds them (eaddrinuse): a new set is worth a try or two.
    for attempt in range(1, 4):
        try:
            broker = rabbitmq.start()
            break
        except rabbitmq.BrokerError as e:
            print("run_with_broker: RabbitMQ did not start (attempt %d): %s"
                  % (attempt, e), flush=True)
    else:
        return 1
    print("run_with_broker: %s=%s (booted in %.1fs)"
          % (var, broker.url, broker.boot_seconds), flush=True)
    env[var] = broker.url
    try:
        return subprocess.call(argv, env=env)
    finally:
        broker.close()


if __name__ == "__main__":
    sys.exit(main())
