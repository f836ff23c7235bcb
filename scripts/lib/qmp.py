#!/usr/bin/env python3
"""qmp.py SOCKET STEP... -- talk to a QEMU monitor (QMP) over its unix socket.

Each STEP is either a command as JSON ('{"execute": "device_del", "arguments": {...}}'),
sent after the previous one got its reply, or 'event:NAME' which waits for that event
(events that arrived while waiting for a reply count). Exits 1 with the monitor's message
when a command fails or an event does not come within QMP_TIMEOUT seconds (default 60).
Used by the real-kernel tests (tests/qemu/) to unplug and replug disks.
"""
import json
import os
import socket
import sys
import time


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    timeout = float(os.environ.get("QMP_TIMEOUT", "60"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(argv[1])
    stream = sock.makefile("rwb", buffering=0)
    events = []

    def read_msg(deadline):
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        line = stream.readline()
        if not line:
            raise RuntimeError("the monitor closed the connection")
        return json.loads(line)

    def reply(deadline):
        # Replies come in order; events may arrive in between and are kept for 'event:' steps.
        while True:
            msg = read_msg(deadline)
            if "event" in msg:
                events.append(msg)
            elif "return" in msg:
                return msg["return"]
            elif "error" in msg:
                raise RuntimeError(msg["error"].get("desc", str(msg["error"])))

    deadline = time.monotonic() + timeout
    greeting = read_msg(deadline)
    if "QMP" not in greeting:
        raise RuntimeError(f"not a QMP greeting: {greeting}")
    stream.write(b'{"execute": "qmp_capabilities"}\n')
    reply(deadline)
    for step in argv[2:]:
        deadline = time.monotonic() + timeout
        if step.startswith("event:"):
            name = step[len("event:"):]
            while not any(e.get("event") == name for e in events):
                msg = read_msg(deadline)
                if "event" in msg:
                    events.append(msg)
            events = [e for e in events if e.get("event") != name]
            print(f"qmp: event {name}")
        else:
            cmd = json.loads(step)
            stream.write((json.dumps(cmd) + "\n").encode())
            ret = reply(deadline)
            print(f"qmp: {cmd.get('execute')}: ok {json.dumps(ret) if ret else ''}".rstrip())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, RuntimeError, ValueError) as e:
        print(f"qmp: {e}", file=sys.stderr)
        sys.exit(1)
