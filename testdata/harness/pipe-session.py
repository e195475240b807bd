"""pipe-session: an agent that keeps one bash session and writes each tool
call to its stdin, reading the output up to a sentinel with the exit status,
as SWE-agent does through SWE-ReX.

    python3 pipe-session.py COMMANDS.json RESULTS.jsonl
"""
import json
import subprocess
import sys
import time

commands = json.load(open(sys.argv[1]))
results = open(sys.argv[2], "a")
session = subprocess.Popen(["bash"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

for i, command in enumerate(commands):
    sentinel = "__AGENT_DONE_%d__" % i
    start = time.time()
    try:
        session.stdin.write(("%s\necho %s $?\n" % (command, sentinel)).encode())
        session.stdin.flush()
    except BrokenPipeError:
        break  # the session died: no command reaches it any more
    output, exit_status = b"", None
    while True:
        line = session.stdout.readline()
        if not line:
            break  # the session died
        if line.startswith(sentinel.encode()):
            exit_status = int(line.split()[1])
            break
        output += line
    results.write(json.dumps({"command": command, "output": output.decode(errors="replace"),
                              "exit": exit_status, "seconds": time.time() - start, "session": session.pid}) + "\n")
    results.flush()

results.write(json.dumps({"done": True, "session": session.pid, "session_alive": session.poll() is None}) + "\n")
results.flush()
while True:  # an agent lives on
    time.sleep(3600)
