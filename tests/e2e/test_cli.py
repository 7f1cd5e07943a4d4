# SPDX-License-Identifier: MIT
"""The command line and configuration contract of SPEC §1: --version, --help,
start-up errors (exit 2 naming the key, the file and line, or the variable),
the precedence --set > environment > file > default, and config/dev.ini.

Usage: /usr/bin/python3 test_cli.py PATH/TO/monoshop
"""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (Server, TestFailure, check, check_eq, clean_env,  # noqa: E402
                     exe_from_argv, expect_problem, expect_status, run, step,
                     tempdir)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

KEYS = ("node.modules", "node.data_dir", "http.listen", "grpc.listen",
        "remote.discount", "events.broker", "nng.listen")


def monoshop(exe, args, env=None, timeout=10):
    """Run the binary to completion; a process still running after |timeout|
    (it started serving instead of failing) is killed and fails the test."""
    argv = [exe] + list(args)
    print("   $ " + " ".join(argv), flush=True)
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           env=env if env is not None else clean_env(),
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise TestFailure("%s did not exit within %ss (stderr: %r)"
                          % (argv, timeout, e.stderr))
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


def safe_args(data_dir):
    """Arguments that keep a run that should fail from touching shared ports
    or ./data if it gets further than expected."""
    return ["--set", "node.data_dir=" + data_dir, "--set", "http.listen=127.0.0.1:0",
            "--set", "grpc.listen=127.0.0.1:0"]


def expect_config_error(exe, args, must_name, what, env=None):
    rc, out, err = monoshop(exe, args, env=env)
    if rc != 2:
        raise TestFailure("%s: expected exit status 2, got %d (stderr: %r)"
                          % (what, rc, err))
    for s in must_name:
        if isinstance(s, re.Pattern):
            if not s.search(err):
                raise TestFailure("%s: stderr should match %r: %r" % (what, s.pattern, err))
        elif s not in err:
            raise TestFailure("%s: stderr should name %r: %r" % (what, s, err))
    print("   ok: %s -> exit 2: %s" % (what, err.strip().splitlines()[-1] if err.strip()
                                      else ""), flush=True)


def padded_basket(size):
    small = '{"cart":{"userName":"pad","items":[]}}'
    return small + " " * (size - len(small))


def check_limit(srv, under, over, what):
    expect_status(srv.request("POST", "/basket", data=padded_basket(under)), 201,
                  "%s: POST /basket with a %d-byte body" % (what, under))
    expect_problem(srv.request("POST", "/basket", data=padded_basket(over)), 413,
                   "%s: POST /basket with a %d-byte body" % (what, over))


def main():
    exe = exe_from_argv()
    work = tempdir()
    data = os.path.join(work, "data")

    step("--version")
    rc, out, err = monoshop(exe, ["--version"])
    check_eq(rc, 0, "--version exit status")
    check(re.fullmatch(r"monoshop \d+\.\d+\.\d+\n?", out),
          "--version prints 'monoshop X.Y.Z' (got %r)" % out)

    step("--help")
    rc, out, err = monoshop(exe, ["--help"])
    check_eq(rc, 0, "--help exit status")
    for k in KEYS:
        check(k in out, "--help lists %s" % k)

    step("start-up errors: exit 2 naming what is wrong")
    expect_config_error(exe, safe_args(data) + ["--set", "nope.key=1"], ["nope.key"],
                        "--set nope.key=1")
    ini = os.path.join(work, "bad.ini")
    with open(ini, "w") as f:
        f.write("# a comment\n[http]\nlisten = 127.0.0.1:0\nbogus_key = 1\n")
    expect_config_error(exe, ["--config", ini] + safe_args(data),
                        [os.path.basename(ini), "bogus_key",
                         re.compile(r"(:4\b|line 4\b)")],
                        "unknown key in a config file (line 4)")
    with open(ini, "w") as f:
        f.write("[http]\nlisten = 127.0.0.1:0\n\n[nope]\nkey = 1\n")
    expect_config_error(exe, ["--config", ini] + safe_args(data),
                        [os.path.basename(ini), "nope",
                         re.compile(r"(:[45]\b|line [45]\b)")],
                        "unknown section in a config file (line 4/5)")
    with open(ini, "w") as f:
        f.write("[http]\nmax_body = lots\n")
    expect_config_error(exe, ["--config", ini] + safe_args(data),
                        [os.path.basename(ini), "max_body",
                         re.compile(r"(:2\b|line 2\b)")],
                        "a wrong value in a config file (line 2)")
    expect_config_error(exe, safe_args(data) + ["--set", "http.listen=abc"],
                        ["http.listen"], "--set http.listen=abc")
    expect_config_error(exe, safe_args(data)[:2],
                        ["MONOSHOP_HTTP_LISTEN"], "MONOSHOP_HTTP_LISTEN=bad",
                        env=clean_env(MONOSHOP_HTTP_LISTEN="bad"))
    expect_config_error(exe, safe_args(data) + ["--set", "node.modules=basket"],
                        ["remote.discount"],
                        "node.modules=basket without remote.discount")
    rc, out, err = monoshop(exe, ["--config", os.path.join(work, "missing.ini")]
                            + safe_args(data))
    check(rc != 0 and "missing.ini" in err,
          "a missing config file is an error naming it (rc %d, %r)" % (rc, err))

    step("precedence: --set > environment > file")
    ini = os.path.join(work, "limits.ini")
    with open(ini, "w") as f:
        f.write("[http]\nmax_body = 1K\n")
    env2k = clean_env(MONOSHOP_HTTP_MAX_BODY="2K")
    srv = Server(exe, config=ini, env=env2k, extra=["http.max_body=3K"], name="set3k")
    srv.start()
    check_limit(srv, 2500, 3500, "file 1K, env 2K, --set 3K")
    srv.stop()
    srv = Server(exe, config=ini, env=env2k, name="env2k")
    srv.start()
    check_limit(srv, 1500, 2500, "file 1K, env 2K")
    srv.stop()
    srv = Server(exe, config=ini, name="file1k")
    srv.start()
    check_limit(srv, 900, 1500, "file 1K")
    srv.stop()

    step("config/dev.ini loads and runs")
    dev = os.path.join(REPO, "config", "dev.ini")
    check(os.path.isfile(dev), "%s exists" % dev)
    srv = Server(exe, config=dev, name="devini")
    srv.start()
    r = expect_status(srv.get("/health"), 200, "GET /health with dev.ini")
    check_eq(r.json.get("status"), "Healthy", "health status with dev.ini")
    srv.stop()


if __name__ == "__main__":
    run(main)
