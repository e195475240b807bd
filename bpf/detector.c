// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

// The tool-call detector. A tool call is a process that a process in a
// watched agent cgroup forks and that then executes a new program. The
// decision is made here, in the kernel, from cgroup IDs: a fork outside
// every watched agent cgroup costs one hash lookup and emits nothing.
//
//   fork  by a watched agent (not a thread) -> the child is pending
//   exec  of a pending process              -> a new tool call: event TOOL
//   fork  by a tool call's process still in the agent cgroup (not yet
//         moved) -> the child belongs to the call: event CHILD, so that
//         user space moves it too; once moved, the kernel keeps a call's
//         children in its cgroup and nothing is needed here
//   exit  of a tool call's leader           -> event EXIT with its status
//   fork  by a process in a tool call's or a session's cgroup whose child
//         starts in another cgroup (clone3 CLONE_INTO_CGROUP) -> event
//         ESCAPE, so that user space kills it (cloned where the agent's
//         processes are) or moves it back (elsewhere); one cloned into the
//         agent cgroup is the call's process from birth here, so that what
//         it forks before user space acts is the call's too (CHILD)
//
// One set of these programs and maps serves the whole host: every shim
// adds its containers' agent cgroups, each with a ring buffer of its own,
// and reads only those (shared.go pins them in bpffs).
//
// A process already in the agent cgroup that execs again (the framework
// re-exec'ing itself) is not pending, so it stays the agent; a session
// shell that user space keeps with the agent is pending again (session
// set), so that the program it is replaced by is reported.
//
// User space may place a pending process before its exec completes (the
// shim holds execve through seccomp user notification): it then adds the
// process to tools itself, so that its exit is reported even if no exec
// succeeds. A TOOL event says whether the new program started unplaced.

#include "common.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// The few kernel fields used, relocated against the running kernel's BTF.
struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct signal_struct {
	struct {
		int counter;
	} live;
	int group_exit_code;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	__u64 start_boottime;
	struct mm_struct *mm;
	struct css_set *cgroups;
	struct signal_struct *signal;
	struct task_struct *group_leader;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
} __attribute__((preserve_access_index));

enum event_kind {
	EVENT_TOOL = 1,
	EVENT_CHILD = 2,
	EVENT_EXIT = 3,
	EVENT_ESCAPE = 4,
	EVENT_FULL = 5,
};

struct event {
	__u64 agent_cgroup; // the watched agent cgroup the call came from
	__u64 fork_ns;	    // CLOCK_MONOTONIC of the fork, for EVENT_TOOL
	__u32 kind;
	__u32 pid;	   // the process (thread group) concerned
	__u32 leader;	   // the tool call's first process
	__s32 exit_status; // wait(2) status, for EVENT_EXIT
	__u32 args_len;	   // bytes of args, for EVENT_TOOL
	__u32 unplaced;	   // EVENT_TOOL: the program started in the agent cgroup
	__u32 parent;	   // EVENT_TOOL: the process that forked the leader
	__u32 session;	   // EVENT_TOOL: the leader was a session user space kept
	__u64 call;	   // EVENT_CHILD, EVENT_ESCAPE: the call's cgroup, where known
	__u64 start;	   // the process's start (boot time, ns): with pid, it names one
	char filename[128];
	char args[256];	   // argv, NUL-separated, cut at 255 bytes
};

// Keeps struct event in the BTF, for bpf2go -type.
const struct event *unused_event __attribute__((unused));

struct tool {
	__u64 agent_cgroup;
	__u32 leader; // the call's leader; 0 for a process cloned out of its call
	__u32 pad;
	__u64 call;   // the call's cgroup, where known (an escapee's)
};

// calls: the cgroup IDs of the watched containers' tool calls and
// sessions -> their agent cgroup. User space adds each before a process
// runs in it, at most bpf.MaxCalls a container: room for 256 containers at
// that bound. A session's cgroup (a shell the agent feeds commands to,
// bounded apart from the agent) is watched as the agent cgroup is: what it
// forks is pending, each command a call.
struct call_cgroup {
	__u64 agent_cgroup;
	__u32 session;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct call_cgroup);
} calls SEC(".maps");

// ring: one container's events. Each container has its own, so that a
// container that does not take its events loses only its own.
struct ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
};

// rings: the watched agent cgroup IDs -> their container's ring buffer.
// User space adds and removes them; one detector serves every shim of the
// host, each reading only its containers' rings.
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__array(values, struct ring);
} rings SEC(".maps");

struct forked {
	__u64 agent_cgroup;
	__u64 fork_ns;
	// session: user space kept the process with the agent (a session
	// shell); its next program is reported, and is no call's until user
	// space says so.
	__u32 session;
	__u32 parent; // the process that forked it, whoever adopts it later
};

// pending: forked by an agent, not exec'd yet. Entries go at exit; maps
// are not preallocated, so an idle detector holds almost no memory.
// pending_of and tools_of hold one map of each per watched container, made
// by user space: its size is the container's quota, so that one container
// filling its own leaves every other's detection whole. A failed insert is
// reported on the container's ring (EVENT_FULL).
// Keep the values in the BTF: reached only through the maps of maps, they
// would be forward declarations there.
const struct forked *unused_forked __attribute__((unused));
const struct tool *unused_tool __attribute__((unused));

struct pending {
	__uint(type, BPF_MAP_TYPE_HASH);
	// Sized by user space, per container (a hash of maps compares no
	// inner max_entries).
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct forked);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__array(values, struct pending);
} pending_of SEC(".maps");

// tools: every process of a live tool call -> its call.
struct tools {
	__uint(type, BPF_MAP_TYPE_HASH);
	// Sized by user space, per container (a hash of maps compares no
	// inner max_entries).
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct tool);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__array(values, struct tools);
} tools_of SEC(".maps");

// dropped counts, per agent cgroup, the events lost to its full ring buffer.
// User space adds a container's counter with its ring.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} dropped SEC(".maps");

// reserve takes an event from the ring buffer of agent_cgroup's container
// and fills its common fields; a full ring buffer is counted in dropped.
static __always_inline struct event *reserve(__u32 kind, __u64 agent_cgroup, __u32 pid, __u32 leader)
{
	void *ring = bpf_map_lookup_elem(&rings, &agent_cgroup);
	if (!ring)
		return 0; // no longer watched
	struct event *e = bpf_ringbuf_reserve(ring, sizeof(*e), 0);
	if (!e) {
		__u64 *n = bpf_map_lookup_elem(&dropped, &agent_cgroup);
		if (n)
			__sync_fetch_and_add(n, 1);
		return 0;
	}
	e->agent_cgroup = agent_cgroup;
	e->fork_ns = 0;
	e->kind = kind;
	e->pid = pid;
	e->leader = leader;
	e->exit_status = 0;
	e->args_len = 0;
	e->unplaced = 0;
	e->parent = 0;
	e->session = 0;
	e->call = 0;
	e->start = 0;
	e->filename[0] = 0;
	return e;
}

// full reports that a map of agent_cgroup's container refused pid.
static __always_inline void full(__u64 agent_cgroup, __u32 pid, __u32 leader)
{
	struct event *e = reserve(EVENT_FULL, agent_cgroup, pid, leader);
	if (e)
		bpf_ringbuf_submit(e, 0);
}

// agent_of returns the watched agent cgroup of a cgroup of its container:
// the agent cgroup itself, or the agent cgroup of a call or a session; 0
// for none. *watched says whether the cgroup's forks are pending (the
// agent's, a session's), not a call's.
static __always_inline __u64 agent_of(__u64 cgroup, int *watched)
{
	*watched = 0;
	if (bpf_map_lookup_elem(&rings, &cgroup)) {
		*watched = 1;
		return cgroup;
	}
	struct call_cgroup *c = bpf_map_lookup_elem(&calls, &cgroup);
	if (!c)
		return 0;
	*watched = c->session;
	return c->agent_cgroup;
}

// escape reports a child that a process in cgroup (a call's, or a
// session's) cloned into another cgroup. One cloned where the agent's
// processes are (C/agent, a session's cgroup) is the call's from birth here,
// so that what it forks before user space acts is the call's too (CHILD).
// It returns whether the child escaped.
static __always_inline int escape(__u64 agent_cgroup, __u64 cgroup, struct task_struct *child, __u32 ptgid, __u32 ctgid)
{
	__u64 into = BPF_CORE_READ(child, cgroups, dfl_cgrp, kn, id);
	if (into == cgroup)
		return 0;
	int into_watched;
	if (agent_of(into, &into_watched) == agent_cgroup && into_watched) {
		// Not running yet: whatever it forks is seen as the call's.
		struct tool t = {.agent_cgroup = agent_cgroup, .leader = 0, .call = cgroup};
		void *tools = bpf_map_lookup_elem(&tools_of, &agent_cgroup);
		if (!tools || bpf_map_update_elem(tools, &ctgid, &t, BPF_ANY))
			full(agent_cgroup, ctgid, ptgid);
	}
	struct event *e = reserve(EVENT_ESCAPE, agent_cgroup, ctgid, ptgid);
	if (e) {
		e->call = cgroup;
		e->start = child->start_boottime;
		bpf_ringbuf_submit(e, 0);
	}
	return 1;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0; // a thread, not a process
	__u64 cgroup = bpf_get_current_cgroup_id();
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	int watched;
	__u64 agent_cgroup = agent_of(cgroup, &watched);
	if (!agent_cgroup)
		return 0; // outside every watched container
	// A call's or a session's child stays in its cgroup unless it was
	// cloned into another one; a call's is the call's, where the kernel
	// keeps it.
	if (cgroup != agent_cgroup && (escape(agent_cgroup, cgroup, child, ptgid, ctgid) || !watched))
		return 0;
	void *pending = bpf_map_lookup_elem(&pending_of, &agent_cgroup);
	void *tools = bpf_map_lookup_elem(&tools_of, &agent_cgroup);
	if (!pending || !tools)
		return 0;

	struct tool *t = bpf_map_lookup_elem(tools, &ptgid);
	if (t) { // a call's process not moved yet: its child is the call's too
		struct tool inherited = *t;
		if (bpf_map_update_elem(tools, &ctgid, &inherited, BPF_ANY))
			full(agent_cgroup, ctgid, inherited.leader);
		struct event *e = reserve(EVENT_CHILD, agent_cgroup, ctgid, inherited.leader);
		if (e) {
			e->call = inherited.call;
			e->start = child->start_boottime;
			bpf_ringbuf_submit(e, 0);
		}
		return 0;
	}
	struct forked f = {.agent_cgroup = agent_cgroup, .fork_ns = bpf_ktime_get_ns(), .session = 0, .parent = ptgid};
	if (bpf_map_update_elem(pending, &ctgid, &f, BPF_ANY))
		full(agent_cgroup, ctgid, ptgid);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid;
	// A pending process is in the agent cgroup or a session's, or in a
	// call's where user space placed it while its execve was held.
	int watched;
	__u64 agent = agent_of(bpf_get_current_cgroup_id(), &watched);
	if (!agent)
		return 0;
	void *pending = bpf_map_lookup_elem(&pending_of, &agent);
	void *tools = bpf_map_lookup_elem(&tools_of, &agent);
	if (!pending || !tools)
		return 0;
	struct forked *f = bpf_map_lookup_elem(pending, &tgid);
	if (!f)
		return 0;
	struct tool t = {.agent_cgroup = agent, .leader = tgid};
	__u64 fork_ns = f->fork_ns;
	__u32 session = f->session, parent = f->parent;
	bpf_map_delete_elem(pending, &tgid);
	if (!session && bpf_map_update_elem(tools, &tgid, &t, BPF_ANY))
		full(agent, tgid, tgid);

	struct event *e = reserve(EVENT_TOOL, agent, tgid, tgid);
	if (!e)
		return 0;
	e->fork_ns = fork_ns;
	e->start = p->start_boottime;
	e->parent = parent;
	e->session = session;
	e->unplaced = watched;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), bprm->filename);
	// argv, read now: a short call may be gone before user space could read
	// /proc/<pid>/cmdline. exec has just written it into the new mm.
	unsigned long start = BPF_CORE_READ(p, mm, arg_start), end = BPF_CORE_READ(p, mm, arg_end);
	__u32 n = end > start ? end - start : 0;
	if (n > sizeof(e->args) - 1)
		n = sizeof(e->args) - 1;
	n &= sizeof(e->args) - 1; // a bound the verifier can see
	e->args_len = n;
	if (bpf_probe_read_user(e->args, n, (void *)start))
		e->args_len = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	// The process ends with its last thread, which need not be its leader
	// (a main thread that called pthread_exit): do_exit has counted this
	// one out of signal->live before the tracepoint.
	struct signal_struct *sig = p->signal;
	if (BPF_CORE_READ(sig, live.counter) != 0)
		return 0; // other threads run on
	int watched;
	__u64 agent = agent_of(bpf_get_current_cgroup_id(), &watched);
	if (!agent)
		return 0;
	void *pending = bpf_map_lookup_elem(&pending_of, &agent);
	void *tools = bpf_map_lookup_elem(&tools_of, &agent);
	if (!pending || !tools)
		return 0;
	__u32 tgid = p->tgid;
	struct forked *f = bpf_map_lookup_elem(pending, &tgid);
	// A session user space follows ends like a call's leader.
	int session = f && f->session;
	// Only the exit that deletes the entry reports it: two last threads
	// exiting side by side both see live at 0.
	int was_pending = !bpf_map_delete_elem(pending, &tgid);
	struct tool *t = bpf_map_lookup_elem(tools, &tgid);
	if (t) {
		__u32 leader = t->leader;
		if (bpf_map_delete_elem(tools, &tgid) || leader != tgid)
			return 0;
	} else if (!(session && was_pending)) {
		return 0;
	}
	struct event *e = reserve(EVENT_EXIT, agent, tgid, tgid);
	if (!e)
		return 0;
	// A group exit (exit_group, a fatal signal) gives the status; else the
	// threads ended one by one, and the leader's own is the wait status.
	int status = BPF_CORE_READ(sig, group_exit_code);
	if (!status && p->pid != tgid)
		status = BPF_CORE_READ(p, group_leader, exit_code);
	e->exit_status = status ? status : p->exit_code;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
