"""tmux-session: an agent that keeps one bash in tmux, sends each tool call
as keys and reads the output from the pane, as OpenHands does.

    python3 tmux-session.py COMMANDS.json RESULTS.jsonl
"""
import json
import os
import re
import subprocess
import sys
import time

commands = json.load(open(sys.argv[1]))
results = open(sys.argv[2], "a")
env = dict(os.environ, SHELL="/bin/bash", TERM="xterm")


def tmux(*args):
    return subprocess.run(["tmux", "-f", "/dev/null"] + list(args), env=env, check=True,
                          stdout=subprocess.PIPE).stdout.decode(errors="replace")


tmux("new-session", "-d", "-s", "agent", "-x", "200", "-y", "50")
tmux("set-option", "-t", "agent", "history-limit", "100000")
pane_pid = int(tmux("display-message", "-p", "-t", "agent", "#{pane_pid}").strip())

for i, command in enumerate(commands):
    sentinel = "__AGENT_DONE_%d__" % i
    start = time.time()
    tmux("send-keys", "-t", "agent", "-l", "%s; echo %s $?" % (command, sentinel))
    tmux("send-keys", "-t", "agent", "Enter")
    exit_status, output = None, ""
    while time.time() - start < 600:
        pane = tmux("capture-pane", "-p", "-J", "-t", "agent", "-S", "-")
        m = re.search(r"^%s (\d+)$" % sentinel, pane, re.M)
        if m:
            exit_status = int(m.group(1))
            # The output is what the pane shows after the command line, the
            # sentinel's line left out, a moment after the sentinel: lines
            # written to the terminal from outside the shell (agentcgroup's
            # reason for a kill) are not ordered with the shell's own.
            time.sleep(0.5)
            pane = tmux("capture-pane", "-p", "-J", "-t", "agent", "-S", "-")
            typed = pane.rfind(sentinel + " $?")
            after = pane[pane.find("\n", typed) + 1:] if typed >= 0 else pane
            output = re.sub(r"^%s \d+\n?" % sentinel, "", after, flags=re.M)
            break
        time.sleep(0.2)
    results.write(json.dumps({"command": command, "output": output, "exit": exit_status,
                              "seconds": time.time() - start, "session": pane_pid}) + "\n")
    results.flush()

alive = subprocess.run(["kill", "-0", str(pane_pid)]).returncode == 0
results.write(json.dumps({"done": True, "session": pane_pid, "session_alive": alive}) + "\n")
results.flush()
while True:  # an agent lives on
    time.sleep(3600)
