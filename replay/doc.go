// Package replay is the replay benchmark: it runs agent containers replaying
// real traces (package trace) at once under one memory budget, in four arms
// (three ways users run agents under the runc shim today, and agentcgroup),
// samples the pool, and reports a table and plots.
package replay
