#!/usr/bin/env bash
# The demo, run as root on a cgroup v2 host (make demo runs it in the lab
# guest): containerd 2.4 with the agentcgroup shim, an agent-like container
# (the agent simulator: it runs its own tool calls as children, as Claude Code
# does), a few more tool calls exec'd into it, a bash session agent, then
# Claude Code itself against a scripted model server, and what agentcgroup
# made of them.
set -euo pipefail
. "$(dirname "$0")/stack.sh"
ctr() { command ctr --address "$sock" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "an agent container under io.containerd.agentcgroup.v1 (memory limit 1 GiB)"
echo "the agent runs three tool calls itself: a 300 MiB test run, a git diff, a failing build"
ctr run -d --runtime io.containerd.agentcgroup.v1 --rootfs "$work/rootfs" --env PATH=/bin --memory-limit $((1 << 30)) \
	--annotation io.agentcgroup.tool.memory.max=768Mi agent1 \
	/bin/agentsim -delay 1s \
	'exec /bin/agentsim -alloc 300 -hold 500ms' \
	'echo "diff --git a/x b/x" >/dev/null' \
	'echo "make: *** [all] Error 2" >&2; exit 2'
cg=/sys/fs/cgroup/default/agent1
echo "container cgroup C = $cg"
echo "init (the agent) is in: $(cat $cg/agent/cgroup.procs | xargs) -> C/agent"
for _ in $(seq 100); do
	[ "$(agentcgroup ps --json agent1 | grep -c '"kind": "fork"')" -ge 3 ] && ! agentcgroup ps agent1 | grep -q running && break
	sleep 0.2
done

step "three tool calls exec'd from outside, the way an orchestrator runs them"
ctr task exec --exec-id pytest-1 agent1 /bin/sh -c 'echo "pytest-1 runs in $(cut -d: -f3 /proc/self/cgroup)"; dd if=/dev/zero of=/dev/null bs=200M count=2 2>/dev/null'
ctr task exec --exec-id pip-install-2 agent1 /bin/sh -c 'echo "pip-install-2 runs in $(cut -d: -f3 /proc/self/cgroup)"; dd if=/dev/zero of=/dev/null bs=48M count=1 2>/dev/null'
ctr task exec --exec-id git-diff-3 agent1 /bin/sh -c 'echo "git-diff-3 runs in $(cut -d: -f3 /proc/self/cgroup)"; exit 3' || echo "git-diff-3 exited with $?"

step "a tool call that outgrows its limit (tool.memory.max=768Mi): it dies alone, the agent is told why"
ctr task exec --exec-id big-build-4 agent1 /bin/agentsim -alloc 900 || echo "big-build-4 exited with $?"
echo "the agent is still $(ctr task ls | awk '$1 == "agent1" {print $3}'), pid $(cat $cg/agent/cgroup.procs | xargs)"
busy=0 ready=0
for d in "$cg"/tools/*/; do
	if grep -q 'populated 1' "$d/cgroup.events"; then busy=$((busy + 1)); else ready=$((ready + 1)); fi
done
echo "tool-call cgroups in use after the calls ended: $busy (and $ready empty, ready for the agent's next calls)"

step "agentcgroup ps agent1"
agentcgroup ps agent1

step "a session agent, as SWE-agent runs one: one bash on a pipe, every command its own call"
debian=$root/.cache/debian-rootfs
out=$work/session && mkdir -p "$out"
cat >"$out/commands.json" <<'JSON'
["cd /tmp && echo hello from the session", "python3 -c 'a = bytearray(400 << 20)'", "git --version", "echo the session is still there: $$"]
JSON
ctr run -d --runtime io.containerd.agentcgroup.v1 --rootfs "$debian" --env PATH=/usr/bin:/bin --memory-limit $((1 << 30)) \
	--annotation io.agentcgroup.tool.memory.max=256Mi --mount "type=bind,src=$out,dst=/out,options=rbind:rw" agent2 \
	/usr/bin/python3 /harness/pipe-session.py /out/commands.json /out/results.jsonl
for _ in $(seq 600); do grep -q '"done"' "$out/results.jsonl" 2>/dev/null && break; sleep 0.2; done
echo "what the agent read of each command (tool.memory.max=256Mi):"
python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "command" in r:
        print("  $ %s\n    exit %s, output: %r" % (r["command"], r["exit"], r["output"]))
' "$out/results.jsonl"
echo "C/agent holds the agent alone: $(for p in $(cat /sys/fs/cgroup/default/agent2/agent/cgroup.procs); do cat /proc/$p/comm; done | xargs); the session shell has a cgroup of its own, bounded as a call"
agentcgroup ps agent2

step "a real agent CLI: Claude Code $(cat "$root/.cache/agents/claude.version"), driven by a scripted model server"
out3=$work/claude && mkdir -p "$out3"
cat >"$out3/script.json" <<'JSON'
{"commands": ["echo hello from the Bash tool; pwd", "python3 -c 'a = bytearray(400 << 20)'", "git --version"], "answer": "Done."}
JSON
"$root/bin/modelserver" -script "$out3/script.json" -log "$out3/requests.jsonl" >"$out3/server.out" &
server=$!
for _ in $(seq 100); do addr=$(sed -n 's/^listening on //p' "$out3/server.out"); [ -n "$addr" ] && break; sleep 0.1; done
cat >"$out3/entrypoint.sh" <<'SH'
mkdir -p /out/work /out/home && cd /out/work
"$@" </dev/null >/out/output 2>&1
echo $? >/out/exit
exec sleep 1000000
SH
echo "the model asks for three commands; the second allocates 400 MiB (tool.memory.max=256Mi)"
ctr run -d --runtime io.containerd.agentcgroup.v1 --net-host --rootfs "$debian" --memory-limit $((2 << 30)) \
	--annotation io.agentcgroup.tool.memory.max=256Mi \
	--mount "type=bind,src=$root/.cache/agents,dst=/opt/agents,options=rbind:ro" --mount "type=bind,src=$out3,dst=/out,options=rbind:rw" \
	--env PATH=/usr/local/bin:/usr/bin:/bin --env HOME=/out/home --env ANTHROPIC_BASE_URL="http://$addr" --env ANTHROPIC_API_KEY=demo \
	--env IS_SANDBOX=1 --env CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 --env DISABLE_AUTOUPDATER=1 --env DISABLE_TELEMETRY=1 agent3 \
	/bin/sh /out/entrypoint.sh /opt/agents/claude/claude -p "Run the commands you are given." --dangerously-skip-permissions
for _ in $(seq 3000); do [ -e "$out3/exit" ] && break; sleep 0.2; done
echo "Claude Code exited $(cat "$out3/exit"): \"$(cat "$out3/output")\"; what it sent back to the model as each tool result:"
python3 -c '
import json, sys
results = []
for line in open(sys.argv[1]):
    body = json.loads(line)["body"] or {}
    got = [b["content"] for m in body.get("messages", []) if isinstance(m["content"], list)
           for b in m["content"] if b.get("type") == "tool_result"]
    results = got if len(got) > len(results) else results
for r in results:
    print("  %r" % (r if isinstance(r, str) else json.dumps(r)))
' "$out3/requests.jsonl"
agentcgroup ps agent3
kill $server

step "teardown: kill, delete"
for c in agent1 agent2 agent3; do
	ctr task kill -s SIGKILL $c
	for _ in $(seq 50); do ctr task ls | grep -q "$c.*STOPPED" && break; sleep 0.1; done
	ctr task rm $c && ctr container rm $c
	echo "after delete of $c: cgroup $( [ -e /sys/fs/cgroup/default/$c ] && echo LEFT || echo gone), state $( [ -e /run/agentcgroup/default/$c ] && echo LEFT || echo gone)"
done
echo "shims left: $(pgrep -c -f containerd-shim-agentcgroup || true)"
