package main

import (
	"encoding/json"
	"slices"
	"strings"
)

// shellTools are the names the CLIs give the tool that runs a shell command.
var shellTools = []string{"Bash", "shell", "shell_command", "exec_command", "run_shell_command", "local_shell"}

// reply is the model's answer to a request declaring tools after done tool
// results: the next command on the shell tool, or text (the script's
// answer; "ok" to a side request, which declares no shell tool).
func (s script) reply(tools []tool, done int) (sh tool, command, text string) {
	sh, ok := shellTool(tools)
	switch next := s.next(done); {
	case !ok:
		return tool{}, "", "ok"
	case next.command != "":
		return sh, next.command, ""
	default:
		return tool{}, "", next.answer
	}
}

// tool is a declared function tool: its name and its parameters' JSON
// schema.
type tool struct {
	name   string
	params json.RawMessage
}

// shellTool picks the shell tool among the declared ones; ok is false where
// the request declares none (a side request: a title, a summary).
func shellTool(tools []tool) (tool, bool) {
	for _, name := range shellTools {
		if i := slices.IndexFunc(tools, func(t tool) bool { return t.name == name }); i >= 0 {
			return tools[i], true
		}
	}
	return tool{}, false
}

// arguments fills the tool's parameters with command, as its schema asks:
// a string, or an argv (["bash", "-lc", command]).
func (t tool) arguments(command string) map[string]any {
	var schema struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(t.params, &schema)
	args := map[string]any{}
	for _, key := range []string{"command", "cmd"} {
		p, ok := schema.Properties[key]
		if !ok {
			continue
		}
		if isType(p.Type, "array") {
			args[key] = []string{"bash", "-lc", command}
		} else {
			args[key] = command
		}
		break
	}
	if len(args) == 0 {
		args["command"] = command
	}
	if _, ok := schema.Properties["description"]; ok {
		args["description"] = "run: " + firstLine(command)
	}
	return args
}

func isType(t any, want string) bool {
	switch v := t.(type) {
	case string:
		return strings.EqualFold(v, want)
	case []any:
		return slices.ContainsFunc(v, func(x any) bool { s, _ := x.(string); return strings.EqualFold(s, want) })
	}
	return false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 60 {
		line = line[:60]
	}
	return line
}
